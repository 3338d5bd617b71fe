from cloudlet.cli.main import run

run()

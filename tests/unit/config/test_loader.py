from pathlib import Path

import pytest

from cloudlet.config import load_spec
from cloudlet.config.spec import MINILM_SOURCE, SMOLLM2_SOURCE
from cloudlet.errors import SpecError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cloudlet.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_no_file_serves_the_bundled_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = load_spec(None, environ={})
    assert [(m.name, m.kind, m.source) for m in spec.models] == [
        ("smollm2", "chat", SMOLLM2_SOURCE),
        ("all-minilm-l6-v2", "embedding", MINILM_SOURCE),
    ]
    assert (spec.server.host, spec.server.port) == ("127.0.0.1", 8080)
    assert spec.server.max_body_bytes == 8 * 1024 * 1024


def test_cloudlet_yaml_in_cwd_is_picked_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "server: {port: 9001}\n")
    monkeypatch.chdir(tmp_path)
    assert load_spec(None, environ={}).server.port == 9001


def test_good_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
server: {host: 0.0.0.0, port: 9000}
models:
  - name: tiny
    engine: llamacpp
    source: file://models/tiny.gguf
    context: 1024
    parallel: 4
""",
    )
    spec = load_spec(path, environ={})
    model = spec.models[0]
    assert (model.name, model.context, model.parallel) == ("tiny", 1024, 4)
    assert model.source == f"file://{(tmp_path / 'models/tiny.gguf').resolve()}"
    assert not spec.server.is_loopback


def test_precedence_file_then_env_then_flags(tmp_path: Path) -> None:
    path = write(tmp_path, "server: {port: 9000, host: 127.0.0.1}\n")
    env = {
        "CLOUDLET_SERVER__PORT": "9100",
        "CLOUDLET_SERVER__HOST": "::1",
        "CLOUDLET_ADMIN_KEY": "x",
    }
    spec = load_spec(path, environ=env, overrides={"server.port": 9200, "server.host": None})
    assert spec.server.port == 9200  # flag beats env
    assert spec.server.host == "::1"  # env beats file
    assert spec.server.is_loopback


def test_env_can_address_a_list_item(tmp_path: Path) -> None:
    spec = load_spec(None, environ={"CLOUDLET_MODELS__0__PARALLEL": "3"})
    assert spec.models[0].parallel == 3


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "server: {port: 7000}\n")
    assert load_spec(None, environ={"CLOUDLET_CONFIG": str(path)}).server.port == 7000


def problems(exc: pytest.ExceptionInfo[SpecError]) -> dict[str, str]:
    return dict(exc.value.problems)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as exc:
        load_spec(tmp_path / "nope.yaml", environ={})
    assert exc.value.source.endswith("nope.yaml")
    assert problems(exc) == {"(file)": "file not found"}


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "models:\n  - name: a\n    source: [unclosed\n")
    with pytest.raises(SpecError) as exc:
        load_spec(path, environ={})
    ((where, why),) = exc.value.problems
    assert where.startswith("line ")
    assert "not valid YAML" in why
    assert str(path) in str(exc.value)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as exc:
        load_spec(write(tmp_path, "- a\n- b\n"), environ={})
    assert problems(exc) == {"(top level)": "expected a mapping, got list"}


def test_wrong_type_names_field_and_expectation(tmp_path: Path) -> None:
    path = write(tmp_path, "models:\n  - name: a\n    source: file:///x.gguf\n    parallel: many\n")
    with pytest.raises(SpecError) as exc:
        load_spec(path, environ={})
    assert "models[0].parallel" in problems(exc)
    assert "valid integer" in problems(exc)["models[0].parallel"]
    assert "'many'" in problems(exc)["models[0].parallel"]


def test_unknown_field_lists_the_known_ones(tmp_path: Path) -> None:
    path = write(tmp_path, "models:\n  - name: a\n    source: file:///x.gguf\n    paralel: 2\n")
    with pytest.raises(SpecError) as exc:
        load_spec(path, environ={})
    why = problems(exc)["models[0].paralel"]
    assert why.startswith("unknown field; expected one of: name, engine")
    assert "parallel" in why


def test_missing_required_field(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as exc:
        load_spec(write(tmp_path, "models:\n  - name: a\n"), environ={})
    assert problems(exc) == {"models[0].source": "required field is missing"}


def test_bad_source_scheme(tmp_path: Path) -> None:
    path = write(tmp_path, "models:\n  - name: a\n    source: https://example.com/x.gguf\n")
    with pytest.raises(SpecError) as exc:
        load_spec(path, environ={})
    assert "expected package://" in problems(exc)["models[0].source"]


def test_unknown_engine_and_out_of_range(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "server: {port: 70000}\nmodels:\n  - {name: a, source: 'file:///x', engine: magic}\n",
    )
    with pytest.raises(SpecError) as exc:
        load_spec(path, environ={})
    found = problems(exc)
    assert "llamacpp" in found["models[0].engine"]
    assert "65535" in found["server.port"]


def test_duplicate_model_names(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "models:\n  - {name: a, source: 'file:///x'}\n  - {name: a, source: 'file:///y'}\n",
    )
    with pytest.raises(SpecError) as exc:
        load_spec(path, environ={})
    assert "appears twice" in str(exc.value)


def test_bad_environment_value_says_where_it_came_from(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as exc:
        load_spec(None, environ={"CLOUDLET_SERVER__PORT": "eighty"})
    assert "[from CLOUDLET_SERVER__PORT]" in problems(exc)["server.port"]

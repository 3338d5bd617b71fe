"""Classification agrees with the Model Openness Tool's API on all of its reference records."""

from __future__ import annotations

import math
from pathlib import Path
from textwrap import dedent

import pytest
from cards_reference import expected_results, reference_files

from cloudlet.cards import MofComponent, MofLicense, MofRecord, classify, load_mof_file
from cloudlet.cards.record import parse_mof_record
from cloudlet.errors import SpecError

FILES = reference_files()


def test_the_reference_set_is_complete() -> None:
    expected = expected_results()
    assert len(FILES) == 27
    assert len(expected) == 27
    assert {load_mof_file(f).name for f in FILES} == set(expected)


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_reference_file_classifies_as_the_tool_did(path: Path) -> None:
    record = load_mof_file(path)
    want = expected_results()[record.name]
    result = classify(record)

    assert result.class_ == (want["class"] or None)
    for k in (1, 2, 3):
        assert result.percent[k] == float(want["progress"][str(k)])  # the API's exact float
        # the tool's pages show PHP round(): halves away from zero
        assert result.progress[k] == math.floor(float(want["progress"][str(k)]) + 0.5)


def _record(*components: MofComponent, **licenses: str) -> MofRecord:
    return MofRecord(
        name="t",
        licenses={kind: MofLicense(name) for kind, name in licenses.items()},
        components=components,
    )


CLASS_III = ("Model architecture", "Model parameters (Final)", "Model card", "Data card",
             "Technical report", "Evaluation results")  # fmt: skip


def test_licence_resolution_own_then_type_then_distribution() -> None:
    record = _record(
        MofComponent("Model architecture"),  # code → the code licence
        MofComponent("Model parameters (Final)"),  # data → no data licence → distribution
        MofComponent("Model card", license="CC-BY-4.0"),  # its own
        distribution="Apache-2.0",
        code="MIT",
    )
    by_name = {c.name: c for c in classify(record).components}
    assert by_name["Model architecture"].license == "MIT"
    assert by_name["Model parameters (Final)"].license == "Apache-2.0"
    assert by_name["Model card"].license == "CC-BY-4.0"


def test_unlicensed_component_never_counts() -> None:
    components = [MofComponent(n) for n in CLASS_III[:-1]]
    components.append(MofComponent("Evaluation results", license="unlicensed"))
    result = classify(_record(*components, distribution="Apache-2.0"))
    assert result.class_ is None
    assert result.percent[3] == 5 / 6 * 100
    status = {c.name: c.status for c in result.components}
    assert status["Evaluation results"] == "unlicensed"


def test_class_three_then_gated_lower_classes() -> None:
    result = classify(_record(*map(MofComponent, CLASS_III), distribution="Apache-2.0"))
    assert result.class_ == 3
    assert result.label == "Class III - Open Model"
    assert dict(result.progress) == {1: 0, 2: 60, 3: 100}


def test_research_paper_stands_in_for_technical_report() -> None:
    names = [n for n in CLASS_III if n != "Technical report"] + ["Research paper"]
    result = classify(_record(*map(MofComponent, names), distribution="Apache-2.0"))
    assert result.class_ == 3
    assert result.percent[3] == 100.0


def test_exact_ids_only_and_wrong_type_is_a_warning() -> None:
    record = _record(
        MofComponent("Model architecture", license="apache-2.0"),  # not the exact SPDX id
        MofComponent("Model card", license="MIT"),  # open, but a code licence on a document
    )
    result = classify(record)
    status = {c.name: c.status for c in result.components}
    assert status["Model architecture"] == "invalid"
    assert status["Model card"] == "included"
    assert result.not_type_appropriate == ("Model card",)


def test_open_data_and_openmdw_count_as_open() -> None:
    record = _record(
        MofComponent("Model parameters (Final)", license="CDLA-Permissive-2.0"),
        MofComponent("Model card", license="OpenMDW-1.0"),
    )
    status = {c.name: c.status for c in classify(record).components}
    assert status["Model parameters (Final)"] == "included"
    assert status["Model card"] == "included"


def test_to_dict_is_the_cli_shape() -> None:
    result = classify(_record(MofComponent("Datasets")))
    assert result.to_dict() == {
        "class": None,
        "label": "Unclassified",
        "progress": {"1": 0, "2": 0, "3": 0},
    }


def test_record_parsing_follows_the_tool_import_rules() -> None:
    data = {
        "framework": {"name": "Model Openness Framework", "version": "1.0", "date": "2024-12-15"},
        "release": {
            "name": "x",
            "version": 1.0,
            "license": {"distribution": {"name": "MIT", "path": None}},
            "components": [
                {"name": "Model card", "license": ""},
                {"name": "Data card", "license": None},
                {"name": "Training code", "license": "unlicensed"},
            ],
        },
    }
    record = parse_mof_record(data, "inline")
    assert record.version == "1.0"
    licences = {c.name: c.license for c in record.components}
    assert licences == {
        "Model card": "unlicensed",
        "Data card": None,
        "Training code": "unlicensed",
    }


def test_bad_record_names_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(
        dedent("""\
            framework: {name: Model Openness Framework, version: '1.0', date: '2024-12-15'}
            release:
              name: ''
              license: {}
              components: [{name: Weights}]
            """),
        encoding="utf-8",
    )
    with pytest.raises(SpecError) as info:
        load_mof_file(path)
    assert info.value.source == str(path)
    fields = [field for field, _ in info.value.problems]
    assert fields == ["release.name", "release.components[0].name"]


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot be read"):
        load_mof_file(tmp_path / "absent.yml")

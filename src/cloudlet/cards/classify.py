"""MOF classification, exactly as the Model Openness Tool's ``ModelEvaluator`` computes it.

The rules, and the tool's quirks we keep on purpose so that our classes and percentages match its
API (``shared/reference/mof/Test_Data/expected_results.json`` is the test oracle):

* Classes are cumulative: Class II needs Class III's required components plus its own, Class I
  all of them. A required component counts when included with an *open* licence (see
  :meth:`Catalogue.is_open`); an open licence of the wrong content type still counts (warning).
* A component's licence is its own, else the release's licence for its content type, else the
  distribution licence. ``unlicensed`` means included without one: it never counts.
* Progress is gated: a class shows 0 % until every less open class is complete.
* The research paper may stand in for a missing technical report: it is then counted in Classes
  III and II, and Class I needs one component fewer.
* The class is the most open class at exactly 100 %; the percentages are floats, which the tool's
  pages show rounded half away from zero (PHP ``round``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from types import MappingProxyType
from typing import Literal

from cloudlet.cards.catalogue import (
    MOF_CLASSES,
    RESEARCH_PAPER,
    TECHNICAL_REPORT,
    Catalogue,
    Component,
    catalogue,
)
from cloudlet.cards.record import UNLICENSED, MofRecord

Status = Literal["included", "optional", "invalid", "unlicensed", "missing", "absent"]
LABELS: Mapping[int | None, str] = MappingProxyType(
    {
        None: "Unclassified",
        1: "Class I - Open Science Model",
        2: "Class II - Open Tooling Model",
        3: "Class III - Open Model",
    }
)


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    """How one of the 17 components fared.

    ``status``: ``included`` (required, open licence), ``optional`` (optional, open licence),
    ``invalid`` (a licence that is not open), ``unlicensed``, ``missing`` (required, not in the
    record) or ``absent`` (optional, not in the record).
    """

    name: str
    mof_class: int
    content_type: str
    required: bool
    status: Status
    license: str | None
    type_appropriate: bool


@dataclass(frozen=True, slots=True)
class MofResult:
    """``class_`` is 1, 2, 3 or None (unclassified); ``progress`` is whole percent per class, as
    the tool shows it, and ``percent`` the unrounded value its API returns."""

    class_: int | None
    progress: Mapping[int, int]
    percent: Mapping[int, float]
    components: tuple[ComponentStatus, ...] = field(default=())

    @property
    def label(self) -> str:
        return LABELS[self.class_]

    @property
    def not_type_appropriate(self) -> tuple[str, ...]:
        """Components counted with an open licence meant for another content type."""
        return tuple(
            c.name
            for c in self.components
            if c.status in ("included", "optional") and not c.type_appropriate
        )

    def to_dict(self) -> dict[str, object]:
        """The JSON shape the CLI and the API use: ``{"class", "label", "progress"}``."""
        return {
            "class": self.class_,
            "label": self.label,
            "progress": {str(k): self.progress[k] for k in MOF_CLASSES},
        }


def classify(record: MofRecord) -> MofResult:
    """Classify a tool record. Pure: the result depends only on the record and the catalogue."""
    cat = catalogue()
    statuses = {c.name: _status(cat, record, c) for c in cat.components}
    included = _included_per_class(cat, statuses)
    percent: dict[int, float] = {k: _progress(cat, statuses, included, k) for k in MOF_CLASSES}
    class_: int | None = None
    for k in (3, 2, 1):
        if percent[k] == 100.0:
            class_ = k
    progress: dict[int, int] = {k: _round_half_up(v) for k, v in percent.items()}
    return MofResult(
        class_=class_,
        progress=MappingProxyType(progress),
        percent=MappingProxyType(percent),
        components=tuple(statuses.values()),
    )


def resolve_license(record: MofRecord, component: Component) -> str | None:
    """The tool's ``resolveLicense``: own licence, else type default, else distribution."""
    for own in record.components:
        if own.name == component.name and own.license is not None:
            return None if own.license == UNLICENSED else own.license
    for kind in (component.content_type, "distribution"):
        default = record.licenses.get(kind)
        if default is not None and default.name:
            return default.name
    return None


def _status(cat: Catalogue, record: MofRecord, component: Component) -> ComponentStatus:
    present = any(c.name == component.name for c in record.components)
    license_ = resolve_license(record, component) if present else None
    status: Status
    if not present:
        status = "missing" if component.required else "absent"
    elif license_ is not None and cat.is_open(license_):
        status = "included" if component.required else "optional"
    elif license_ is None:
        status = "unlicensed"
    else:
        status = "invalid"
    return ComponentStatus(
        name=component.name,
        mof_class=component.mof_class,
        content_type=component.content_type,
        required=component.required,
        status=status,
        license=license_,
        type_appropriate=license_ is not None
        and cat.is_type_appropriate(license_, component.content_type),
    )


def _included_per_class(cat: Catalogue, statuses: Mapping[str, ComponentStatus]) -> dict[int, int]:
    """How many required components count in each class's cumulative evaluation."""
    counts: dict[int, int] = {}
    for k in MOF_CLASSES:
        needed = [c.name for c in cat.components if c.required and c.mof_class >= k]
        counts[k] = sum(1 for name in needed if statuses[name].status == "included")
    # ``handleTechnicalReportOmission``: with no counted technical report, a research paper that
    # is in the record (whatever its licence) joins Classes III and II with the same status.
    if (
        statuses[TECHNICAL_REPORT].status != "included"
        and statuses[RESEARCH_PAPER].status == "included"
    ):
        counts[3] += 1
        counts[2] += 1
    return counts


def _progress(
    cat: Catalogue,
    statuses: Mapping[str, ComponentStatus],
    included: Mapping[int, int],
    k: int,
) -> float:
    """The tool's ``getProgress``, line for line (including where the loop stops)."""
    total = 0
    count = 0
    stopped_at = k - 1
    for i in (3, 2, 1):
        if i < k:
            break
        total += len(cat.required(i))
        count = included[i]
        if count < total:
            stopped_at = i
            break
    if stopped_at > k:
        return 0.0
    if (
        k == 1
        and statuses[TECHNICAL_REPORT].status != "included"
        and statuses[RESEARCH_PAPER].status == "included"
    ):
        total -= 1
    return min(count / total * 100, 100.0)


def _round_half_up(value: float) -> int:
    """PHP's ``round``: halves away from zero (Python's ``round`` would go to even)."""
    return int(Decimal(repr(value)).quantize(Decimal(1), rounding=ROUND_HALF_UP))

"""Per-judgment exports of a campaign (admins, mapping visible): CSV, JSON Lines and Parquet, streamed.

One row per judgment, one per answer of the LLM judge (status "judge", labeller "judge:<model>", its score
and choice answers only), and one per skipped item (status "skipped", with its reason and no answers): the
campaign, the item code, its kind (regular, or a quality-control repeat or gold item: filter on it), the unblinded source (SAE, method, feature index), a stable labeller pseudonym
(the username only when the admin asks), one column per question, time spent, revisions, the panel order
shown, ISO 8601 timestamps. Rows are read with a database iterator in chunks and written as they come, so
memory does not grow with the campaign.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
from collections.abc import Iterator

from django.conf import settings

from labelsite.models import FORMULA_PREFIXES, Assignment, Campaign, JudgeAnswer, Judgment, JudgmentRevision
from labelsite.selectors.admin import require_mapping

CHUNK_ROWS = 2000  # database rows fetched per round trip
PARQUET_ROW_GROUP = 10_000  # rows per Parquet row group (what is held in memory at once)

HEAD = ("campaign", "item_code", "item_kind", "status", "sae", "method", "feature_index", "labeller")
TAIL = ("time_spent_ms", "revisions", "panel_order", "skip_reason", "created_at", "updated_at")
_INT_TAIL = ("time_spent_ms", "revisions")
# What every row says about its item, read through a judgment, an assignment or a judge answer.
ITEM_FIELDS = (
    "item__code",
    "item__kind",
    "item__source__sae__name",
    "item__source__sae__method",
    "item__feature_index",
)


def labeller_pseudonym(user_id: int) -> str:
    """A stable pseudonym for a labeller: the same in every export and campaign, derived from the user id
    with a key only the server knows, so it reveals neither the username nor the id."""
    digest = hmac.new(settings.SECRET_KEY.encode(), f"labeller:{user_id}".encode(), hashlib.sha256).hexdigest()
    return f"L-{digest[:10]}"


def export_columns(campaign: Campaign) -> list[str]:
    return [*HEAD, *(q["key"] for q in campaign.questions), *TAIL]


def _answer_value(question: dict, value):
    """An answer as an export cell: per-component answers as JSON text, everything else as stored."""
    if question["type"] == "per_component":
        return json.dumps(value, sort_keys=True) if value else None
    return value


def _answer_row(
    campaign: Campaign, questions: list[dict], name, status: str,
    code, kind, sae, method, feature, labeller, answers, ms, revisions, order, created, updated,
) -> dict:  # fmt: skip
    """One export row of answers (a judgment, or an earlier version of one), in export_columns order."""
    row = {
        "campaign": campaign.name,
        "item_code": code,
        "item_kind": kind,
        "status": status,
        "sae": sae,
        "method": method,
        "feature_index": feature,
        "labeller": name(labeller),
    }
    answers = answers or {}
    for q in questions:
        row[q["key"]] = _answer_value(q, answers.get(q["key"]))
    row.update(
        time_spent_ms=ms,
        revisions=revisions,
        panel_order=order,
        skip_reason=None,
        created_at=created,
        updated_at=updated,
    )
    return row


def export_rows(
    *, campaign: Campaign, identities: bool = False, judgment_ids: list[int] | None = None, history: bool = False
) -> Iterator[dict]:
    """Every judgment, then every skipped item, as dicts keyed by `export_columns` (timestamps as datetimes).
    With `judgment_ids`: only those judgments (one page of the API), no skips. With `history`: also every earlier
    version of a revised judgment (status "earlier version", `revisions` = its version number from 0,
    `created_at` = when it was saved, `updated_at` = when the next version replaced it), after the judgments."""
    require_mapping(campaign)
    questions = list(campaign.questions)
    who = "labeller__username" if identities else "labeller_id"
    pseudonyms: dict[int, str] = {}

    def name(labeller) -> str:
        if identities:
            return labeller
        if labeller not in pseudonyms:
            pseudonyms[labeller] = labeller_pseudonym(labeller)
        return pseudonyms[labeller]

    judgments = Judgment.objects.filter(campaign=campaign)
    if judgment_ids is not None:
        judgments = judgments.filter(pk__in=judgment_ids)
    judgments = judgments.order_by("pk").values_list(
        *ITEM_FIELDS,
        who,
        "answers",
        "time_spent_ms",
        "revisions",
        "panel_order",
        "created_at",
        "updated_at",
    )
    for values in judgments.iterator(chunk_size=CHUNK_ROWS):
        yield _answer_row(campaign, questions, name, "judged", *values)
    if judgment_ids is not None:
        return
    if history:
        yield from _earlier_versions(campaign, questions, who, name)
    yield from _judge_rows(campaign, questions)
    skips = (
        Assignment.objects.filter(campaign=campaign, status=Assignment.Status.SKIPPED)
        .order_by("pk")
        .values_list(
            *ITEM_FIELDS,
            who,
            "skip_reason",
            "leased_at",
        )
    )
    for code, kind, sae, method, feature, labeller, reason, leased in skips.iterator(chunk_size=CHUNK_ROWS):
        row = {
            "campaign": campaign.name,
            "item_code": code,
            "item_kind": kind,
            "status": "skipped",
            "sae": sae,
            "method": method,
            "feature_index": feature,
            "labeller": name(labeller),
        }
        row.update({q["key"]: None for q in questions})
        row.update(
            time_spent_ms=None,
            revisions=None,
            panel_order=None,
            skip_reason=reason,
            created_at=leased,
            updated_at=leased,
        )
        yield row


def csv_safe(value):
    """Labellers' free text must not run as a spreadsheet formula when the CSV is opened (CSV injection):
    a cell starting with = + - @ or a tab/CR gets a leading apostrophe."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


TIMESTAMPS = ("created_at", "updated_at")


def csv_stream(rows: Iterator[dict], columns: list[str], free_text: set[str], flags: set[str]) -> Iterator[str]:
    """CSV text in chunks of about CHUNK_ROWS rows; the `flags` (yes/no) columns as true/false, timestamps
    in ISO 8601, missing values empty. Cells of the `free_text` columns (what labellers typed) are defused
    with `csv_safe`; our own identifiers (item codes never start with a formula character:
    labelsite.models.new_item_code) are written as they are."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    guarded = [i for i, key in enumerate(columns) if key in free_text]
    booleans = [i for i, key in enumerate(columns) if key in flags]
    times = [i for i, key in enumerate(columns) if key in TIMESTAMPS]
    for n, row in enumerate(rows, start=1):
        cells = [row[key] for key in columns]  # None is written as an empty cell
        for i in guarded:
            if cells[i] and cells[i].startswith(FORMULA_PREFIXES):
                cells[i] = "'" + cells[i]
        for i in booleans:
            if cells[i] is not None:
                cells[i] = "true" if cells[i] else "false"
        for i in times:
            if cells[i] is not None:
                cells[i] = cells[i].isoformat()
        writer.writerow(cells)
        if n % CHUNK_ROWS == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def jsonl_stream(rows: Iterator[dict]) -> Iterator[str]:
    """One JSON object per line (keys in column order, timestamps in ISO 8601), in chunks."""
    lines: list[str] = []
    for row in rows:
        for key in TIMESTAMPS:
            if row[key] is not None:
                row[key] = row[key].isoformat()
        lines.append(json.dumps(row, ensure_ascii=False))
        if len(lines) == CHUNK_ROWS:
            yield "\n".join(lines) + "\n"
            lines = []
    if lines:
        yield "\n".join(lines) + "\n"


def parquet_schema(campaign: Campaign):
    import pyarrow as pa

    types = {"score": pa.int64(), "yesno": pa.bool_()}
    fields = [pa.field(name, pa.int64() if name == "feature_index" else pa.string()) for name in HEAD]
    fields += [pa.field(q["key"], types.get(q["type"], pa.string())) for q in campaign.questions]
    for name in TAIL:
        if name in _INT_TAIL:
            fields.append(pa.field(name, pa.int64()))
        elif name.endswith("_at"):
            fields.append(pa.field(name, pa.timestamp("us", tz="UTC")))
        else:
            fields.append(pa.field(name, pa.string()))
    return pa.schema(fields)


class _Chunks(io.RawIOBase):
    """A write-only file that hands back what was written since the last `take()` (Parquet's sink)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def parquet_stream(rows: Iterator[dict], campaign: Campaign) -> Iterator[bytes]:
    """A Parquet file in pieces: one row group per PARQUET_ROW_GROUP rows, handed on as soon as written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = parquet_schema(campaign)
    sink = _Chunks()
    writer = pq.ParquetWriter(sink, schema, compression="zstd")
    batch: list[dict] = []

    def flush() -> bytes:
        writer.write_table(pa.Table.from_pylist(batch, schema=schema))
        batch.clear()
        return sink.take()

    for row in rows:
        batch.append(row)
        if len(batch) == PARQUET_ROW_GROUP:
            yield flush()
    if batch:
        yield flush()
    writer.close()
    yield sink.take()


EXPORT_FORMATS = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}


def _earlier_versions(campaign: Campaign, questions: list[dict], who: str, name) -> Iterator[dict]:
    versions = (
        JudgmentRevision.objects.filter(judgment__campaign=campaign)
        .order_by("judgment_id", "version")
        .values_list(
            *(f"judgment__{field}" for field in ITEM_FIELDS),
            f"judgment__{who}",
            "answers",
            "time_spent_ms",
            "version",
            "judgment__panel_order",
            "saved_at",
            "replaced_at",
        )
    )
    for values in versions.iterator(chunk_size=CHUNK_ROWS):
        yield _answer_row(campaign, questions, name, "earlier version", *values)


def _judge_rows(campaign: Campaign, questions: list[dict]) -> Iterator[dict]:
    """The LLM judge's answers as export rows beside the labellers' (labelsite.services.judge)."""
    answers = (
        JudgeAnswer.objects.filter(campaign=campaign)
        .order_by("item_id")
        .values_list(
            *ITEM_FIELDS,
            "model",
            "answers",
            "created_at",
        )
    )
    for code, kind, sae, method, feature, model, data, created in answers.iterator(chunk_size=CHUNK_ROWS):
        yield _answer_row(
            campaign, questions, "judge:{}".format, "judge",
            code, kind, sae, method, feature, model, data, None, None, None, created, created,
        )  # fmt: skip


def export_stream(
    *, campaign: Campaign, fmt: str, identities: bool = False, history: bool = False
) -> Iterator[str | bytes]:
    """The export of `campaign` as an iterator of chunks in `fmt` (csv, jsonl or parquet); `history` adds the
    earlier versions of revised judgments."""
    require_mapping(campaign)  # raise before the response starts, not in the middle of it
    rows = export_rows(campaign=campaign, identities=identities, history=history)
    if fmt == "csv":
        free_text = {q["key"] for q in campaign.questions if q["type"] == "text"} | {"skip_reason"}
        flags = {q["key"] for q in campaign.questions if q["type"] == "yesno"}
        return csv_stream(rows, export_columns(campaign), free_text, flags)
    if fmt == "jsonl":
        return jsonl_stream(rows)
    if fmt == "parquet":
        return parquet_stream(rows, campaign)
    raise ValueError(f"unknown export format {fmt!r}; use one of {sorted(EXPORT_FORMATS)}")

"""The LLM judge: a campaign's score and choice questions answered by the configured LLM on the same blind
panels labellers see (their text, with the same titles, guidelines, prompts and rubrics), never the source.

`campaign_judge_start` queues one job of kind JUDGE_JOB_KIND (a double click finds it queued); its handler,
`run_campaign_judge_job`, answers every regular and judge-only item that has no JudgeAnswer yet, a batch at a time, so a
stopped or failed job resumes where it was. Answers are held to a JSON schema derived from the questions (a
local model decodes under it). Each call is kept as an LLMCall. Judge answers are read by the results and
the exports only, never by `labelsite.selectors.blind`.
"""

from __future__ import annotations

from html.parser import HTMLParser

from django.db import transaction

from compute.ml.config import ConfigError, JudgeJobConfig
from labelsite.models import Campaign, Item, JudgeAnswer
from labelsite.questions import CHOICE, GUESS_KEY, SCORE
from labelsite.selectors.blind import PANEL_TITLES
from labelsite.services import LabelConflict, LabelError, LabelNotFound

JUDGE_JOB_KIND = "judge_campaign"
JUDGE_PURPOSE = "judge"
JUDGED_KINDS = (Item.Kind.REGULAR, Item.Kind.JUDGE)  # the study's features; quality-control items are human-only
STRONG_SHADE = 47  # class hNN with NN >= 47: the token fires at least half as strongly as the panel's strongest


def judged_questions(questions: list[dict]) -> list[dict]:
    """The questions a judge answers: scores and choices (free text, yes/no and per-component are human-only; the
    labellers' guess of the source measures their blinding, not the feature)."""
    return [q for q in questions if q["type"] in (SCORE, CHOICE) and q["key"] != GUESS_KEY]


def answer_schema(questions: list[dict]) -> dict:
    """The JSON schema of the judge's answer: one required property per judged question, its rubric's scores
    (an integer) or its options' values (a string)."""
    properties = {}
    for q in judged_questions(questions):
        if q["type"] == SCORE:
            properties[q["key"]] = {"type": "integer", "enum": [int(level["score"]) for level in q["rubric"]]}
        else:
            properties[q["key"]] = {"type": "string", "enum": [o["value"] for o in q["options"]]}
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


class _PanelText(HTMLParser):
    """A blind panel's HTML as text: one line per context, strongly shaded tokens in [[ ]]; values kept."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.line: list[str] = []
        self.marks: list[int | None] = []  # per open span: where a strong token's text starts in `line`

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "li" or tag in ("h3", "h4"):
            self._flush()
        if tag == "span":
            cls = dict(attrs).get("class") or ""
            strong = cls[:1] == "h" and cls[1:].isdigit() and int(cls[1:]) >= STRONG_SHADE
            self.marks.append(len(self.line) if strong else None)

    def handle_endtag(self, tag: str) -> None:
        if tag == "span" and self.marks:
            start = self.marks.pop()
            if start is not None:  # the token's text in brackets, its surrounding spaces outside them
                token = "".join(self.line[start:])
                core = token.strip()
                lead, trail = token[: len(token) - len(token.lstrip())], token[len(token.rstrip()) :]
                self.line[start:] = [f"{lead}[[{core}]]{trail}" if core else token]
        if tag in ("li", "h3", "h4", "ol", "ul", "div", "p"):
            self._flush()

    def handle_data(self, data: str) -> None:
        self.line.append(data)

    def _flush(self) -> None:
        text = "".join(self.line).strip()
        if text:
            self.lines.append(text)
        self.line = []

    def text(self) -> str:
        self._flush()
        return "\n".join(self.lines)


def panel_text(html: str) -> str:
    """The text of a blind panel (what a labeller reads in it), for the judge's prompt."""
    parser = _PanelText()
    parser.feed(html)
    parser.close()
    return parser.text()


def judge_messages(campaign: Campaign, item: Item) -> list[dict]:
    """The judge's prompt for one item: the guidelines, each panel under its labeller-facing title, then the
    score and choice questions with their rubrics or options. Nothing in it names a source."""
    questions = judged_questions(campaign.questions)
    lines = [
        "You are a labeller in a blind study of features of a language model. Each panel shows text contexts "
        "where one feature activates; tokens in [[double brackets]] activate it strongly.",
    ]
    if campaign.guidelines.strip():
        lines += ["", "Guidelines:", campaign.guidelines.strip()]
    panels = []
    for kind in ("domain", "general"):
        html = getattr(item, f"{kind}_html")
        if html:
            panels.append(f"## {PANEL_TITLES[kind]}\n{panel_text(html)}")
    asked = []
    for q in questions:
        if q["type"] == SCORE:
            choices = "; ".join(f"{level['score']}: {level['label']}" for level in q["rubric"])
        else:
            choices = "; ".join(f"{o['value']}: {o['label']}" for o in q["options"])
        asked.append(f"- {q['key']}: {q['prompt']} ({choices})")
    user = "\n\n".join([*panels, "Answer these questions:\n" + "\n".join(asked)])
    return [{"role": "system", "content": "\n".join(lines)}, {"role": "user", "content": user}]


def campaign_judge_start(*, campaign_id: int, user=None, **options):
    """Queue the judge job of a campaign (or return the one already queued or running). `options` are
    JudgeJobConfig's; a campaign without score or choice questions, or not open yet, is refused."""
    from compute.jobs import job_create
    from compute.models import JobStatus

    try:
        config = JudgeJobConfig.from_params(options)
    except ConfigError as exc:
        raise LabelError(str(exc)) from None
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().filter(pk=campaign_id).first()
        if campaign is None:
            raise LabelNotFound("This campaign does not exist.")
        if not judged_questions(campaign.questions):
            raise LabelError("This campaign has no score or choice question for a judge to answer.")
        if not campaign.items.filter(kind__in=JUDGED_KINDS).exists():
            raise LabelConflict("This campaign has no items yet: open it first.")
        running = campaign.build_jobs.filter(
            kind=JUDGE_JOB_KIND, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]
        ).first()
        if running is not None:
            return running
        job = job_create(
            kind=JUDGE_JOB_KIND, params={"campaign_id": campaign.pk, **config.to_params()}, created_by=user
        )
        campaign.build_jobs.add(job)
    return job


def run_campaign_judge_job(ctx) -> dict:
    """Job handler (kind JUDGE_JOB_KIND): answer every regular and judge-only item without a judge answer,
    batch by batch."""
    from compute.jobs import JobInputError
    from compute.ml.llm import LLMError
    from compute.services.llm import llm_client, llm_complete

    campaign_id = ctx.params.get("campaign_id")
    campaign = Campaign.objects.filter(pk=campaign_id).first() if isinstance(campaign_id, int) else None
    if campaign is None:
        raise JobInputError(f"Campaign {campaign_id!r} does not exist.")
    try:
        config = JudgeJobConfig.from_params(ctx.params)
    except ConfigError as exc:
        raise JobInputError(str(exc)) from None
    schema = answer_schema(campaign.questions)
    if not schema["required"]:
        raise JobInputError("This campaign has no score or choice question for a judge to answer.")
    pending = list(
        Item.objects.filter(campaign=campaign, kind__in=JUDGED_KINDS, judge_answer__isnull=True)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    client = llm_client()
    answered, retried = 0, 0
    ctx.progress(0.0, f"{len(pending)} items to answer")
    for start in range(0, len(pending), config.batch_size):
        batch = Item.objects.filter(pk__in=pending[start : start + config.batch_size]).order_by("pk")
        for item in batch.only("pk", "domain_html", "general_html"):
            try:
                completion, call = llm_complete(
                    purpose=JUDGE_PURPOSE,
                    messages=judge_messages(campaign, item),
                    max_tokens=config.max_tokens,
                    temperature=0.0,
                    json_schema=schema,
                    job=ctx.job,
                    client=client,
                )
            except LLMError as exc:
                raise JobInputError(f"The judge could not answer item {item.pk}: {exc}") from None
            JudgeAnswer.objects.update_or_create(
                item=item,
                defaults={"campaign": campaign, "answers": completion.data, "model": completion.model, "call": call},
            )
            answered += 1
            retried += bool(completion.attempts)
            # after every item: a cancel is seen within one answer (a local model takes seconds per item)
            ctx.progress(answered / len(pending), f"{answered} of {len(pending)} answered")
    return {"campaign_id": campaign.pk, "answered": answered, "answered_after_a_retry": retried}

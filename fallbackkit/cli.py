"""Command line: parse, call the library, print. No work is done here.

Errors raised by the library (FallbackkitError) become one line on stderr and the error's exit code;
a traceback only with --verbose. A full disk, a read-only kit or a damaged store met half-way
through a command is named the same way (store.kit.storage_error); anything else is an internal
error (exit 70): one line and the hint to rerun with --verbose. --verbose also turns on debug
logging of the `fallbackkit` logger, which only the CLI configures.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator

import click

from . import __version__, jsontext
from .errors import ExitCode, FallbackkitError

log = logging.getLogger("fallbackkit")


class KitContext:
    def __init__(self, kit_dir: Path, verbose: bool, quiet: bool, user: str | None):
        self.kit_dir = kit_dir
        self.verbose = verbose
        self.quiet = quiet
        self.user = user
        self._kit = None

    @property
    def actor(self) -> str:
        from .store.kit import default_actor
        return self.user or default_actor()

    def kit(self, *, for_restore: bool = False):
        if self._kit is None:
            from .store import open_kit
            self._kit = open_kit(self.kit_dir, for_restore=for_restore)
        return self._kit

    def close(self) -> None:
        if self._kit is not None:
            self._kit.close(save_head=True)
            self._kit = None


pass_kit = click.make_pass_decorator(KitContext)


def emit_json(data: Any) -> None:
    # json.dumps(data, indent=2, ensure_ascii=False, default=str)'s text, without its pure-Python
    # encoder (half of `worklist --json` at 100,000 captures): fallbackkit/jsontext.py
    click.echo(jsontext.dumps(data, indent=2, default=str))


def _nested_json(value: Any, level: int) -> str:
    """json.dumps(value, indent=2) as it reads nested `level` deep in emit_json's output."""
    return jsontext.dumps(value, indent=2, default=str, level=level)


def _json_list(items: Iterable[Any], level: int) -> Iterator[str]:
    """A list in emit_json's layout, piece by piece as its items come."""
    pad, first = "  " * (level + 1), True
    for item in items:
        yield ("[\n" if first else ",\n") + pad + _nested_json(item, level + 1)
        first = False
    yield "[]" if first else "\n" + "  " * level + "]"


def emit_json_list(items: Iterable[Any]) -> None:
    """emit_json(list(items)), byte for byte, written as the items come (never all in memory)."""
    pieces: list[str] = []
    for piece in _json_list(items, 0):
        pieces.append(piece)
        if len(pieces) >= 500:  # a write per few hundred items, not per item
            click.echo("".join(pieces), nl=False)
            pieces.clear()
    click.echo("".join(pieces))


def emit_json_report(totals: dict[str, Any], forms: Iterable[Any]) -> None:
    """emit_json({"totals": totals, "forms": list(forms)}), byte for byte, with the forms streamed.
    The totals come first in the output and a full recompute completes them only after the last
    form, so the forms' text is spooled first to an unnamed temporary file (no name on disk, mode
    0600, gone when closed)."""
    import tempfile
    spool = tempfile.TemporaryFile("w+", encoding="utf-8")
    for piece in _json_list(forms, 1):
        spool.write(piece)
    spool.seek(0)
    click.echo('{\n  "totals": ' + _nested_json(totals, 1) + ',\n  "forms": ', nl=False)
    while True:
        piece = spool.read(1 << 20)
        if not piece:
            break
        click.echo(piece, nl=False)
    spool.close()
    click.echo("\n}")


def say(ctx: KitContext, message: str) -> None:
    """Human-oriented messages go to stderr, so --json output on stdout stays clean."""
    if not ctx.quiet:
        click.echo(message, err=True)


def table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    if not rows:
        click.echo("(none)")
        return
    widths = {c: max(len(c), *(len(str(r.get(c, "") if r.get(c) is not None else "")) for r in rows)) for c in columns}
    click.echo("  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        click.echo("  ".join(str(r.get(c) if r.get(c) is not None else "").ljust(widths[c]) for c in columns))


def _configure_logging(verbose: bool) -> None:
    """The library logs to the `fallbackkit` logger and never configures it: this is the one place."""
    logger = logging.getLogger("fallbackkit")
    for handler in [h for h in logger.handlers if getattr(h, "_fallbackkit_cli", False)]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._fallbackkit_cli = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logger.propagate = False


# Top-level help lists the commands in the order of the work, grouped by who does it.
WORKFLOW = (("Ward staff and the downtime coordinator", ("init", "census", "ids", "templates", "print", "sheets")),
            ("Records clerks", ("scan", "quarantine", "readings", "review", "reconcile", "identities", "worklist")),
            ("IT", ("settings", "export", "report", "backup", "restore", "check", "audit", "merge", "users")),
            ("Drills and tests", ("simulate",)))


class FallbackkitGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        ordered = [name for _, names in WORKFLOW for name in names if name in self.commands]
        return ordered + sorted(set(self.commands) - set(ordered))

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Whole one-line summaries (click cuts them at 45 characters), in workflow order."""
        listed = set()
        for title, names in WORKFLOW + (("Other", tuple(self.list_commands(ctx))),):
            rows = []
            for name in names:
                command = self.commands.get(name)
                if command is None or command.hidden or name in listed:
                    continue
                listed.add(name)
                rows.append((name, command.get_short_help_str(limit=200)))
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        # patient data: whatever the user's umask, what the kit writes is readable by its owner only
        umask = os.umask(0o077)
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - the one place where errors become output
            self._fail(ctx, exc)
        finally:
            if isinstance(ctx.obj, KitContext):
                try:
                    ctx.obj.close()
                except Exception as exc:  # noqa: BLE001 - closing must not hide the command's own outcome
                    log.debug("closing the kit failed: %s", exc)
            os.umask(umask)

    @staticmethod
    def _fail(ctx: click.Context, exc: Exception) -> None:
        from .store.kit import storage_error
        verbose = isinstance(ctx.obj, KitContext) and ctx.obj.verbose
        if verbose:
            import traceback
            traceback.print_exc()
        error = exc if isinstance(exc, FallbackkitError) else storage_error(
            exc, ctx.obj.kit_dir if isinstance(ctx.obj, KitContext) else None)
        if error is not None:
            click.echo(f"error: {error}", err=True)
            ctx.exit(int(error.exit_code))
        logging.getLogger("fallbackkit").debug("internal error", exc_info=exc)
        click.echo(f"error: internal error ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
                   + ("" if verbose else " — rerun with --verbose for the traceback, and report it"), err=True)
        ctx.exit(int(ExitCode.INTERNAL))


@click.group(cls=FallbackkitGroup)
@click.version_option(__version__, prog_name="fallbackkit")
@click.option("--kit", "kit_dir", type=click.Path(file_okay=False, path_type=Path),
              envvar="FALLBACKKIT_KIT", default=Path("kit"), show_default=True,
              help="The kit directory (or FALLBACKKIT_KIT).")
@click.option("--verbose", "-v", is_flag=True, help="Show tracebacks and debug logging.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or notes on stderr.")
@click.option("--user", envvar="FALLBACKKIT_USER", help="Who is acting, for the audit log (default: login name).")
@click.pass_context
def cli(ctx: click.Context, kit_dir: Path, verbose: bool, quiet: bool, user: str | None) -> None:
    """fallbackkit: paper-mode fallback for hospitals — print, scan, reconcile, review, export."""
    _configure_logging(verbose)
    ctx.obj = KitContext(kit_dir, verbose, quiet, user)


# --- kit -------------------------------------------------------------------------------------
@cli.command()
@click.option("--templates", "templates_from", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Copy templates from this directory instead of the shipped ones.")
@click.option("--tz", help="Time zone of the times written on paper (IANA name, e.g. Europe/Brussels;"
                           " default: this computer's).")
@pass_kit
def init(ctx: KitContext, templates_from: Path | None, tz: str | None) -> None:
    """Create a new kit: store, secret, kit id, templates, time zone."""
    from .store import init_kit
    from .store.settings import get_setting
    kit = ctx._kit = init_kit(ctx.kit_dir, ctx.actor, templates_from, tz)  # closed by the group
    click.echo(f"kit {kit.kit_id} created at {kit.path}")
    click.echo(f"time zone of paper times: {get_setting(kit, 'tz')}"
               + ("" if tz else " (this computer's; change with: fallbackkit settings set tz ZONE)"))
    say(ctx, f"keep {kit.path / 'secret.key'} private: it signs every printed sheet")


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def settings(click_ctx: click.Context, as_json: bool) -> None:
    """Show the kit's settings (time zone, FHIR identifier systems); `settings set KEY VALUE` changes one."""
    if click_ctx.invoked_subcommand is not None:
        return
    from .store.settings import kit_settings
    rows = kit_settings(click_ctx.obj.kit())
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        value = row["value"] if row["value"] is not None else "(not set)"
        click.echo(f"{row['name']:<24} {value}{'' if row['set'] or row['value'] is None else '  (default)'}")


@settings.command("set")
@click.argument("key")
@click.argument("value")
@pass_kit
def settings_set(ctx: KitContext, key: str, value: str) -> None:
    """Set KEY (tz, mrn_system, encounter_system, accession_system, national_number_system, language, tls_cert,
    tls_key) to VALUE (audited)."""
    from .store.settings import set_setting
    click.echo(f"{key} = {set_setting(ctx.kit(), key, value, ctx.actor)}")
    _recompute_after_setting(ctx)


def _recompute_after_setting(ctx: KitContext) -> None:
    """A setting changes what every form means: recompute the kept summaries now, in IT's command,
    not in the review station's next decision (minutes at 100,000 captures, under the write lock)."""
    from .reconcile.summary import pending_forms, refresh
    kit = ctx.kit()
    waiting = pending_forms(kit)
    if waiting:
        say(ctx, f"recomputing the summaries of {waiting} forms (the review station waits meanwhile)")
        refresh(kit)


# --- census ----------------------------------------------------------------------------------
@cli.group()
def census() -> None:
    """The census snapshot that ward packs are pre-filled from."""


@census.command("import")
@click.argument("patients_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--meds", "meds_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Active medications file (for the MAR).")
@click.option("--as-of", help="When the census was exported (printed as 'data as of'); default: now.")
@click.option("--check", is_flag=True, help="Dry run: show what would be imported and every problem; write nothing.")
@click.option("--profile", "profile_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Census profile to read the files with (default: the kit's census-profile.yaml).")
@click.option("--sheet", help=".xlsx: the sheet of the patients workbook (default: the first).")
@click.option("--meds-sheet", help=".xlsx: the sheet of the medications workbook (default: the first).")
@click.option("--json", "as_json", is_flag=True)
@pass_kit
def census_import(ctx: KitContext, patients_file: Path, meds_file: Path | None, as_of: str | None, check: bool,
                  profile_path: Path | None, sheet: str | None, meds_sheet: str | None, as_json: bool) -> None:
    """Import PATIENTS (CSV or .xlsx; and --meds MEDS) as the new snapshot, read through the kit's profile."""
    from .generate.census import describe_changes, import_census, plan_census
    if check:
        plan = plan_census(ctx.kit(), patients_file, meds_file, profile=profile_path, sheet=sheet,
                           meds_sheet=meds_sheet)
        if as_json:
            emit_json(plan.as_dict())
        else:
            click.echo(f"dry run of {patients_file.name} (profile: {plan.profile}); nothing is written")
            click.echo(f"{len(plan.patients)} patients, {len(plan.medications)} medications")
            click.echo("first rows as mapped:")
            table(plan.patients[:5], ["mrn", "encounter", "last_name", "first_name", "birth_date", "sex",
                                      "ward", "bed", "allergies"])
            click.echo("patients per ward: " + ", ".join(f"{w} {n}" for w, n in plan.per_ward().items()))
            for name, columns in plan.extra_columns.items():
                click.echo(f"{name}: columns ignored: {', '.join(columns)}")
            click.echo(f"problems: {len(plan.problems) or 'none'}")
            for problem in plan.problems:
                click.echo(f"  {problem}")
            click.echo("unchanged: same census as the current snapshot" if plan.unchanged
                       else "differences from the current snapshot:")
            if not plan.unchanged:
                for line in describe_changes(plan.changes):
                    click.echo(f"  {line}")
        if plan.problems:
            click.get_current_context().exit(int(ExitCode.BAD_INPUT))
        return
    summary = import_census(ctx.kit(), patients_file, meds_file, ctx.actor, as_of, profile=profile_path,
                            sheet=sheet, meds_sheet=meds_sheet)
    if as_json:
        emit_json(summary)
        return
    if summary["unchanged"]:
        click.echo(f"unchanged: the census is the same as snapshot {summary['snapshot_id']} "
                   f"({summary['imported_at']}); nothing imported")
        return
    click.echo(f"snapshot {summary['snapshot_id']}: {summary['patients']} patients, "
               f"{summary['medications']} medications, wards {', '.join(summary['wards'])}")
    for name, columns in summary["extra_columns"].items():
        say(ctx, f"{name}: columns ignored: {', '.join(columns)}")
    for line in describe_changes(summary["changes"]):
        click.echo(f"  {line}")


@census.group("profile")
def census_profile() -> None:
    """How the hospital's census export is read (KIT/census-profile.yaml)."""


@census_profile.command("init")
@click.argument("sample", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--meds", "meds_sample", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A sample of the medications export too.")
@click.option("--sheet", help=".xlsx: the sheet of the sample (default: the first).")
@click.option("--force", is_flag=True, help="Replace an existing profile.")
@pass_kit
def census_profile_init(ctx: KitContext, sample: Path, meds_sample: Path | None, sheet: str | None,
                        force: bool) -> None:
    """Guess a profile from SAMPLE (encoding, delimiter, dates, columns) and write it to the kit to check."""
    from .generate.census_profile import init_profile
    result = init_profile(ctx.kit().path, sample, meds_sample, sheet=sheet, force=force)
    click.echo(f"profile written to {result['file']}")
    for what, r in result["results"].items():
        click.echo(f"{what}: " + ", ".join(f"{k} <- {v!r}" for k, v in r.section.columns.items()))
        for note in r.notes:
            click.echo(f"  {note}")
        if r.unmatched_columns:
            click.echo(f"  columns not used: {', '.join(r.unmatched_columns)}")
    say(ctx, f"check it, then try `fallbackkit census import {sample.name} --check`")


@census.command("show-profile")
@pass_kit
def census_show_profile(ctx: KitContext) -> None:
    """Print the profile `census import` uses (the kit's, or the built-in one)."""
    from .generate.census_profile import kit_profile, profile_yaml, SniffResult
    profile = kit_profile(ctx.kit().path)
    click.echo(f"# {profile.source}")
    click.echo(profile_yaml(SniffResult(profile.patients, [], [], []),
                            SniffResult(profile.medications, [], [], [])), nl=False)


# --- downtime identifier ranges (fallbackkit/generate/id_ranges.py) ---------------------------
@cli.group("ids")
def ids_group() -> None:
    """Downtime identifier ranges reserved in the hospital system, used by blank stock."""


@ids_group.command("load")
@click.option("--kind", type=click.Choice(["mrn", "encounter", "accession"]), required=True)
@click.option("--from", "first", required=True, help="First number of the range, as the hospital system writes it.")
@click.option("--to", "last", required=True, help="Last number of the range (included).")
@click.option("--part", help="K/N: load only this station's part K of the range shared by N stations.")
@click.option("--note", help="e.g. 'EHR reservation 2026-11'.")
@pass_kit
def ids_load(ctx: KitContext, kind: str, first: str, last: str, part: str | None, note: str | None) -> None:
    """Load a range of numbers reserved for downtime: blank stock of that kind uses them, never twice."""
    from .generate.id_ranges import load_range
    r = load_range(ctx.kit(), kind, first, last, ctx.actor, note, part)
    click.echo(f"{kind} range {r['from']}-{r['to']} loaded ({r['count']} numbers); {r['left']} {kind} numbers left")
    say(ctx, "each station (copy of the kit) must load its own sub-range: two stations never share numbers")


@ids_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_kit
def ids_list(ctx: KitContext, as_json: bool) -> None:
    """The loaded ranges: used and left."""
    from .generate.id_ranges import list_ranges
    rows = list_ranges(ctx.kit())
    if as_json:
        emit_json(rows)
    else:
        table(rows, ["kind", "from", "to", "used", "left", "loaded_at", "note"])


# --- templates and sheets --------------------------------------------------------------------
@cli.group()
def templates() -> None:
    """The form templates of this kit."""


@templates.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_kit
def templates_list(ctx: KitContext, as_json: bool) -> None:
    from .generate import kit_templates
    from .templates import layout_form
    found = kit_templates(ctx.kit())
    rows = []
    for key, t in sorted(found.items()):
        if "@" not in key:
            continue
        rows.append({"name": t.name, "version": t.version, "pages": len(layout_form(t)),
                     "patient_bound": t.patient_bound, "title": t.title["en"]})
    if as_json:
        emit_json(rows)
    else:
        table(rows, ["name", "version", "pages", "patient_bound", "title"])


@templates.command("preview")
@click.argument("name")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path), help="PDF file.")
@click.option("--lang", default="en", show_default=True, help="One or two of en, fr, nl (e.g. fr,nl).")
@click.option("--paper", type=click.Choice(["a4", "letter"]), default="a4", show_default=True)
@pass_kit
def templates_preview(ctx: KitContext, name: str, out_path: Path, lang: str, paper: str) -> None:
    """Print NAME (a template of this kit, or a YAML file) for a made-up patient; nothing is registered."""
    from .generate import kit_templates
    from .generate.preview import preview_template
    from .templates import parse_langs
    from .templates.model import find_template
    path = Path(name)
    if not (name.endswith((".yaml", ".yml")) and path.is_file()):
        path = find_template(kit_templates(ctx.kit()), name).source
    done = preview_template(path, out_path, paper, parse_langs(lang))
    say(ctx, f"{done['template']}: {done['pages']} page(s) with sample data written to {done['out']} "
             f"(a preview: its sheets belong to no kit)")
    for line in done["reentry"]:
        say(ctx, f"  re-entry: {line}")
    if not done["reentry"]:
        say(ctx, "  re-entry: none declared (the form is stored and reconciled, but makes no worklist items)")


@cli.group()
def sheets() -> None:
    """The registry of printed sheets."""


@sheets.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.option("--ward")
@click.option("--batch", type=int)
@pass_kit
def sheets_list(ctx: KitContext, as_json: bool, ward: str | None, batch: int | None) -> None:
    sql = ("SELECT s.sheet_id, s.form_id, s.template, s.version, s.page, s.pages, s.batch_id,"
           " f.patient_mrn, f.downtime_mrn, f.ward, f.bed, s.printed_at FROM sheets s"
           " JOIN forms f ON f.form_id = s.form_id WHERE 1=1")
    params: list[Any] = []
    if ward:
        sql += " AND f.ward = ?"
        params.append(ward)
    if batch:
        sql += " AND s.batch_id = ?"
        params.append(batch)
    rows = list(ctx.kit().db.query(sql + " ORDER BY s.batch_id, s.rowid", params))
    if as_json:
        emit_json(rows)
    else:
        table(rows, ["sheet_id", "template", "page", "pages", "batch_id", "patient_mrn", "downtime_mrn", "ward", "bed"])


@sheets.command("show")
@click.argument("sheet_id")
@click.option("--json", "as_json", is_flag=True)
@pass_kit
def sheets_show(ctx: KitContext, sheet_id: str, as_json: bool) -> None:
    """Geometry of one printed sheet (mm from the page's top-left corner)."""
    from .generate import sheet_geometry
    geometry = sheet_geometry(ctx.kit(), sheet_id)
    if as_json:
        emit_json(geometry)
    else:
        click.echo(f"{geometry['sheet_id']}  {geometry['template']}@{geometry['version']}  "
                   f"page {geometry['page']}/{geometry['pages']}  printed {geometry['printed_at']}")
        for f in geometry["fields"]:
            where = f.get("box_mm") or [o["value"] for o in f.get("options", [])]
            click.echo(f"  {f['name']:<28} {f['type']:<12} {where}")


# --- printing --------------------------------------------------------------------------------
@cli.command("print")
@click.argument("template", required=False)
@click.option("--ward", help="Print a ward pack (or 'all': one pack per ward into --out DIR).")
@click.option("--blank", type=int, help="Print N blank forms with fresh downtime identifiers.")
@click.option("--blank-set", "blank_set", type=int,
              help="Print N new-patient sets: every patient form, one downtime MRN and encounter per set.")
@click.option("--patient", "mrn", help="Print TEMPLATE pre-filled for this MRN.")
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path), help="PDF file (or directory for --ward all).")
@click.option("--lang", default="en", show_default=True, help="One or two of en, fr, nl (e.g. fr,nl).")
@click.option("--paper", type=click.Choice(["a4", "letter"]), default="a4", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="List the printed sheets in page order.")
@click.option("--if-changed", is_flag=True,
              help="--ward all: print nothing (and say 'unchanged') if this census was printed already.")
@click.option("--keep", type=click.IntRange(min=1), help="--ward all: keep only the N newest pack folders beside --out DIR.")
@click.option("--days", type=int, help="--ward / --patient: one MAR per patient per day of the expected outage, each dated.")
@click.option("--first-day", "first_day", help="With --days: the first day (YYYY-MM-DD; default today).")
@click.option("--one-sided", "one_sided", is_flag=True,
              help="For a printer without duplex: no blank backs (a two-page form is then two sheets).")
@pass_kit
def print_cmd(ctx: KitContext, template: str | None, ward: str | None, blank: int | None, blank_set: int | None,
              mrn: str | None, out_path: Path, lang: str, paper: str, as_json: bool, if_changed: bool,
              keep: int | None, days: int | None, first_day: str | None, one_sided: bool) -> None:
    """Print a ward pack, blank stock, new-patient sets, or one patient's form."""
    from .errors import BadInput
    from .generate import print_all_wards, print_blank, print_blank_set, print_patient, print_ward
    from .generate.issue import packs_unchanged, prune_packs
    from .templates import parse_langs
    langs = parse_langs(lang)
    kit = ctx.kit()
    modes = [m for m in (ward is not None, blank is not None, blank_set is not None, mrn is not None) if m]
    if len(modes) != 1:
        raise BadInput("say what to print: --ward W, or TEMPLATE --blank N, or --blank-set N, "
                       "or TEMPLATE --patient MRN")
    if (if_changed or keep is not None) and ward != "all":
        raise BadInput("--if-changed and --keep go with --ward all --out DIR")
    if (days is not None or first_day is not None) and ward is None and mrn is None:
        raise BadInput("--days goes with --ward or --patient (blank stock carries no date)")
    if first_day is not None and days is None:
        raise BadInput("--first-day goes with --days N")
    from .generate.issue import outage_days
    dates = outage_days(kit, days, first_day) if days is not None else None
    if blank_set is not None:
        if template:
            raise BadInput("a new-patient set holds every patient form: drop TEMPLATE")
        results = [print_blank_set(kit, blank_set, out_path, paper, langs, ctx.actor, one_sided)]
    elif ward is not None:
        if template:
            raise BadInput("a ward pack prints every patient form: drop TEMPLATE or use --patient")
        if ward == "all" and if_changed and (same := packs_unchanged(kit, paper, langs)):
            message = (f"unchanged: census snapshot {same['snapshot_id']} ({same['imported_at']}) is already "
                       f"printed in {', '.join(same['folders'])}; nothing printed")
            if as_json:
                emit_json([])
                say(ctx, message)
            else:
                click.echo(message)
            return
        if ward == "all":
            results = print_all_wards(kit, out_path, paper, langs, ctx.actor, dates, one_sided)
            if keep is not None:
                for folder in prune_packs(kit, out_path, keep):
                    say(ctx, f"removed old packs in {folder}")
        else:
            results = [print_ward(kit, ward, out_path, paper, langs, ctx.actor, dates, one_sided)]
    else:
        if not template:
            raise BadInput("name the TEMPLATE to print (see `fallbackkit templates list`)")
        if blank is not None:
            results = [print_blank(kit, template, blank, out_path, paper, langs, ctx.actor, one_sided)]
        else:
            results = [print_patient(kit, template, mrn, out_path, paper, langs, ctx.actor, dates, one_sided)]
    if as_json:
        emit_json([{"sheet_id": s["sheet_id"], "template": s["template"], "page": s["page"], "pages": s["pages"],
                    "form_id": s["form_id"], "file": str(r.out_path)} for r in results for s in r.sheets])
    else:
        for r in results:
            click.echo(f"{r.out_path}: {len(r.sheets)} sheets, {r.forms} forms (batch {r.batch_id})")
    if any(r.double_sided for r in results):
        say(ctx, "print double-sided (flip on the long edge): each form starts on a new sheet, a two-page form"
                 " front and back (--one-sided for a printer without duplex)")
    say(ctx, "the PDF holds patient data: store and print it as you would a chart")


# --- scan: scan, readings, quarantine, simulate (fallbackkit/scan/) ---------------------------
@cli.command("scan")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Worker processes (default: one per core; 0: read in this process).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@pass_kit
def scan_cmd(ctx: KitContext, paths: tuple[Path, ...], workers: int | None, as_json: bool) -> None:
    """Read scanned files and folders (PDF, TIFF, PNG, JPEG) into the kit."""
    from .errors import DiskFull
    from .scan.pipeline import format_summary, scan_paths
    from .store.kit import files_done, storage_error
    kit = ctx.kit()
    done_before = files_done(kit)
    try:
        summary = scan_paths(kit, list(paths), workers=workers, progress=not ctx.quiet, actor=ctx.actor)
    except (OSError, sqlite3.OperationalError) as exc:
        error = storage_error(exc, ctx.kit_dir)
        if isinstance(error, DiskFull):  # say what was kept: the files read completely before
            raise DiskFull(f"{error.message}: {files_done(kit) - done_before} files of this scan were read and"
                           " stored completely before", hint=error.hint) from exc
        raise
    from .reconcile.summary import refresh as refresh_summaries
    refresh_summaries(kit)  # the scanned forms' summaries, now rather than at the station's next view
    if as_json:
        emit_json(summary.to_dict())
        for f in summary.failed:
            say(ctx, f"FAILED {f['error']}")
    else:
        from .store.settings import get_setting
        click.echo(format_summary(summary, get_setting(kit, "language")))
    if not (summary.files_new or summary.files_resumed or summary.files_already_scanned or summary.files_failed):
        click.echo(f"no files found in {', '.join(str(p) for p in paths)}: nothing was scanned (the scanner's"
                   " output is read from PDF, TIFF, PNG and JPEG files, in folders too)", err=True)
    if not summary.ok:
        click.get_current_context().exit(int(ExitCode.FAILURES))


@cli.command("readings")
@click.option("--json", "as_json", is_flag=True)
@click.option("--status", type=click.Choice(["review", "accepted"]))
@click.option("--sheet", "sheet_id", help="Only this sheet id.")
@pass_kit
def readings_cmd(ctx: KitContext, as_json: bool, status: str | None, sheet_id: str | None) -> None:
    """What was read: one row per field of each sheet's latest capture."""
    from .scan.pipeline import list_readings
    rows = list_readings(ctx.kit(), status=status, sheet_id=sheet_id)
    if as_json:
        keys = ("sheet_id", "field", "type", "value", "status", "confidence", "reason", "ink", "reviewed",
                "suggestion", "suggestion_confidence", "prefill", "rule", "cells")
        emit_json([{k: r[k] for k in keys if k in r} for r in rows])
    else:
        table([{**r, "value": json.dumps(r["value"], ensure_ascii=False), "suggestion": r.get("suggestion") or ""}
               for r in rows], ["sheet_id", "field", "type", "value", "status", "confidence", "reason", "suggestion"])


@cli.group()
def quarantine() -> None:
    """Pages that could not be identified: list them, identify them by their printed sheet id."""


@quarantine.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.option("--all", "include_assigned", is_flag=True, help="Also pages already assigned to a sheet.")
@pass_kit
def quarantine_list(ctx: KitContext, as_json: bool, include_assigned: bool) -> None:
    """The pages put aside, with why; the reason and detail in the kit's language (setting `language`;
    --json keeps the codes and the English detail)."""
    from .review.i18n import detail_text, reason_text
    from .scan.pipeline import list_quarantine
    from .store.settings import get_setting
    rows = list_quarantine(ctx.kit(), include_assigned=include_assigned)
    if as_json:
        emit_json(rows)
    else:
        lang = get_setting(ctx.kit(), "language")
        table([{**r, "page": r["quarantine_id"], "file page": r["page_index"], "reason": reason_text(lang, r["reason"]),
                "detail": detail_text(lang, r.get("detail_codes") or r["detail"])} for r in rows],
              ["page", "reason", "file", "file page", "assigned_sheet_id", "detail"])


@quarantine.command("assign")
@click.argument("page", type=click.IntRange(1, 2 ** 63 - 1))
@click.argument("sheet_id")
@pass_kit
def quarantine_assign(ctx: KitContext, page: int, sheet_id: str) -> None:
    """Read quarantined PAGE as the sheet SHEET_ID printed on it.

    A page quarantined as bad_signature or foreign_kit needs --user naming a supervisor account."""
    from .review.users import is_supervisor
    from .scan.pipeline import UNTRUSTED_REASONS, assign_quarantined, capture_summary
    from .store.quarantine import get_quarantined
    item = get_quarantined(ctx.kit().db, page)
    supervisor = is_supervisor(ctx.kit().db, ctx.actor)
    if item and item.reason in UNTRUSTED_REASONS and supervisor:  # a warning, even with --quiet
        click.echo(f"warning: page {page} was quarantined as {item.reason}: {UNTRUSTED_REASONS[item.reason]}; "
                   f"read in on the word of supervisor {ctx.actor}", err=True)
    c = capture_summary(ctx.kit(), assign_quarantined(ctx.kit(), page, sheet_id, ctx.actor, supervisor=supervisor))
    click.echo(f"page {page} read as sheet {c.sheet_id}: capture {c.capture_id}, {c.fields} fields, "
               f"{c.to_review} to review"
               + (f" (sheet captured before: capture {c.duplicate_of})" if c.duplicate_of else ""))


@cli.command("simulate")
@click.argument("pdf", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Folder for the images and truth.json.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--tier", type=click.Choice(["clean", "office", "hard", "phone", "mixed"]), default="mixed",
              show_default=True, help="How damaged the 'scans' are.")
@click.option("--digits", "real_digits", is_flag=True,
              help="Write plausible values in real handwritten digits into the comb boxes (numbers, dates, "
                   "times), so that the scans get digit suggestions; without it, scribbles.")
@click.option("--json", "as_json", is_flag=True)
@pass_kit
def simulate_cmd(ctx: KitContext, pdf: Path, out_dir: Path, seed: int, tier: str, real_digits: bool,
                 as_json: bool) -> None:
    """Fill the sheets of a printed PDF with synthetic pen marks and scanner damage (demo, tests)."""
    from .scan.simulate import simulate
    summary = simulate(ctx.kit(), pdf, out_dir, seed=seed, tier=tier, digits=real_digits)
    if as_json:
        emit_json(summary)
    else:
        click.echo(f"{summary['out']}: {summary['pages']} pages in {summary['files']} files, truth in truth.json"
                   + (f" ({summary['skipped']} pages without a sheet code skipped)" if summary["skipped"] else "")
                   + (f"; {summary['digit_fields']} comb fields written in real handwritten digits"
                      if real_digits else ""))


# --- reconcile: reconcile, identities, worklist, audit, merge (fallbackkit/reconcile/) --------
@cli.command("reconcile")
@click.option("--json", "as_json", is_flag=True, help="The full report on stdout.")
@click.option("--all", "show_all", is_flag=True, help="List complete forms too, not only those needing attention.")
@click.option("--full", is_flag=True, help="Recompute everything from the readings instead of the kept summaries.")
@pass_kit
def reconcile_cmd(ctx: KitContext, as_json: bool, show_all: bool, full: bool) -> None:
    """What came back, what is missing, duplicated, in conflict, to review or flagged."""
    from .reconcile.core import iter_report
    totals, forms = iter_report(ctx.kit(), full=full)  # streamed: 100,000 forms are never all in memory
    if as_json:
        emit_json_report(totals, forms)
        return
    rows = []
    for f in forms:
        unresolved = sum(1 for c in f["conflicts"] if not c["resolved"])
        if not show_all and f["state"] == "complete" and not (unresolved or f["to_review"] or f["flags"]):
            continue
        rows.append({"form_id": f["form_id"], "template": f["template"], "ward": f["ward"], "bed": f["bed"],
                     "patient": f["real_mrn"] or f["downtime_mrn"], "state": f["state"],
                     "missing": ",".join(map(str, f["pages_missing"])), "dups": len(f["duplicates"]),
                     "conflicts": unresolved, "review": f["to_review"], "flags": len(f["flags"]),
                     "_flags": f["flags"]})
    for key, value in totals.items():  # complete once the forms are read (a full recompute)
        click.echo(f"{key.replace('_', ' '):<24} {value}")
    click.echo("")
    table(rows, ["form_id", "template", "ward", "bed", "patient", "state", "missing", "dups", "conflicts",
                 "review", "flags"])
    flagged = [(r["form_id"], fl) for r in rows for fl in r["_flags"]]
    if flagged:
        click.echo("\nflags:")
        for form_id, fl in flagged:
            click.echo(f"  {form_id}  {fl['code']:<26} {fl['message']}")


@cli.group()
def identities() -> None:
    """Downtime identifiers on blank stock and their links to real MRNs."""


@identities.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_kit
def identities_list(ctx: KitContext, as_json: bool) -> None:
    from .reconcile import list_identities
    rows = list_identities(ctx.kit())
    if as_json:
        emit_json(rows)
    else:
        table([{**r, "forms": ",".join(r["form_ids"])} for r in rows],
              ["downtime_mrn", "kind", "forms", "linked_to", "name", "birth_date"])


@identities.command("link")
@click.argument("downtime_mrn")
@click.argument("real_mrn")
@click.option("--reason", required=True, help="Why: e.g. 'wristband checked', 'registration matched by name + DOB'.")
@pass_kit
def identities_link(ctx: KitContext, downtime_mrn: str, real_mrn: str, reason: str) -> None:
    """Link DOWNTIME_MRN to the patient's REAL_MRN (recorded with who and why)."""
    from .reconcile import link_identity
    link_id = link_identity(ctx.kit(), downtime_mrn, real_mrn, ctx.actor, reason)
    click.echo(f"{downtime_mrn.upper()} -> {real_mrn} (link {link_id})")


@identities.command("mrn-format")
@click.argument("pattern", required=False)
@pass_kit
def identities_mrn_format(ctx: KitContext, pattern: str | None) -> None:
    """Show, or set to PATTERN, the format real MRNs must have (a regular expression; digits by default)."""
    from .reconcile.identity import real_mrn_pattern, set_real_mrn_pattern
    if pattern is None:
        click.echo(real_mrn_pattern(ctx.kit()))
        return
    click.echo(f"real MRNs must now match {set_real_mrn_pattern(ctx.kit(), pattern, ctx.actor)}")
    _recompute_after_setting(ctx)


@identities.command("unlink")
@click.argument("downtime_mrn")
@click.option("--reason", required=True)
@pass_kit
def identities_unlink(ctx: KitContext, downtime_mrn: str, reason: str) -> None:
    """Revoke a wrong link (kept in history)."""
    from .reconcile import unlink_identity
    unlink_identity(ctx.kit(), downtime_mrn, ctx.actor, reason)
    click.echo(f"{downtime_mrn.upper()} unlinked")


@identities.command("suggest")
@click.option("--json", "as_json", is_flag=True)
@click.option("--min-score", type=float, default=0.5, show_default=True)
@pass_kit
def identities_suggest(ctx: KitContext, as_json: bool, min_score: float) -> None:
    """Propose links from transcribed name and birth date; nothing is linked until a person does."""
    from .reconcile import list_identities, no_suggestion_reason, suggest_identities
    from .reconcile.identity import NO_SUGGESTION_WORDS
    kit = ctx.kit()
    rows = suggest_identities(kit, min_score=min_score)
    if as_json:
        emit_json(rows)
    else:
        table(rows, ["downtime_mrn", "real_mrn", "score", "name", "birth_date", "census_name", "why"])
        suggested = {r["downtime_mrn"] for r in rows}
        for ident in list_identities(kit):  # say why the others have none (suggestions need transcriptions)
            if ident["kind"] == "mrn" and not ident["linked_to"] and ident["downtime_mrn"] not in suggested:
                click.echo(f"{ident['downtime_mrn']}: no suggestion — "
                           f"{NO_SUGGESTION_WORDS[no_suggestion_reason(kit, ident)]}")
        say(ctx, "suggestions only: link with `fallbackkit identities link DOWNTIME REAL --reason ...`")


@cli.group("worklist", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--ward")
@click.option("--status", type=click.Choice(["pending", "entered", "not-needed"]))
@click.pass_context
def worklist_cmd(click_ctx: click.Context, as_json: bool, ward: str | None, status: str | None) -> None:
    """Re-entry items in back-load order (registrations, orders, results, medications, vitals)."""
    if click_ctx.invoked_subcommand is not None:
        return
    from .reconcile.worklist import iter_worklist
    items = iter_worklist(click_ctx.obj.kit(), ward=ward, status=status)  # streamed, one item at a time
    if as_json:
        emit_json_list(items)
    else:
        columns = ["item_id", "kind", "patient_mrn", "care_time", "status", "ready", "exported", "summary"]
        table([{c: i.get(c) for c in columns} | {"ready": "yes" if i["resolved"] else "no",
                                                "exported": "yes" if i["exported_at"] else "no"} for i in items],
              columns)


@worklist_cmd.command("mark")
@click.argument("item_id")
@click.argument("status", type=click.Choice(["entered", "not-needed", "pending"]))
@click.option("--by", "by", help="Who entered it (default: --user / login name).")
@click.option("--note")
@pass_kit
def worklist_mark(ctx: KitContext, item_id: str, status: str, by: str | None, note: str | None) -> None:
    """Record ITEM as entered in the hospital system (or not needed)."""
    from .reconcile import mark_item
    mark_item(ctx.kit(), item_id, status, by or ctx.actor, note)
    click.echo(f"{item_id}: {status}")


@cli.group()
def audit() -> None:
    """The hash-chained audit log."""


@audit.command("verify")
@click.option("--json", "as_json", is_flag=True)
@pass_kit
def audit_verify(ctx: KitContext, as_json: bool) -> None:
    """Check that no audit row was changed, inserted or deleted."""
    from .reconcile import verify_chain
    result = verify_chain(ctx.kit())
    if as_json:
        emit_json({"ok": True, **result})
    else:
        click.echo(f"audit log intact: {result['rows']} rows")


@cli.command("merge")
@click.argument("other", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
@pass_kit
def merge_cmd(ctx: KitContext, other: Path, as_json: bool) -> None:
    """Bring another scanning station's work (same kit) into this kit; safe to repeat."""
    from .reconcile import merge_store
    from .reconcile.summary import refresh
    result = merge_store(ctx.kit(), other, ctx.actor)
    refresh(ctx.kit())  # the merged forms' summaries, now rather than at the station's next view
    if as_json:
        emit_json(result)
    elif result["changed"]:
        click.echo("merged: " + ", ".join(f"{k} {v}" for k, v in result["added"].items()))
    else:
        click.echo("nothing new to merge")
    for double in result["double_entries"]:
        click.echo(f"warning: {double['message']}", err=True)
    for shared in result["shared_ranges"]:
        click.echo(f"warning: {shared['message']}", err=True)


# --- review: review, users (fallbackkit/review/) ----------------------------------------------
@cli.command("review")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (keep 127.0.0.1 unless other PCs must reach this one).")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(1, 65535))
@click.option("--allow-network", is_flag=True,
              help="Needed with a --host other than this PC: other machines can then reach the station (over HTTPS).")
@click.option("--cert", type=click.Path(dir_okay=False, path_type=Path),
              help="IT's TLS certificate (PEM); default: setting tls_cert, else the kit's self-signed one.")
@click.option("--key", type=click.Path(dir_okay=False, path_type=Path),
              help="The private key of --cert (PEM); default: setting tls_key.")
@click.option("--tls", "force_tls", is_flag=True, help="HTTPS on this PC too (always on with --allow-network).")
@pass_kit
def review_cmd(ctx: KitContext, host: str, port: int, allow_network: bool, cert: Path | None, key: Path | None,
               force_tls: bool) -> None:
    """Serve the review station for records clerks (open http://HOST:PORT in a browser)."""
    from . import review
    from .errors import BadInput
    from .store.settings import get_setting
    network = not review.is_loopback(host)
    if network:
        if not allow_network:
            raise BadInput(f"--host {host} would let other machines on the network reach the station",
                           hint="keep the default 127.0.0.1, or add --allow-network if other PCs must use it")
        # a warning about exposure is shown even with --quiet
        click.echo(f"warning: listening on {host}: other machines on the network can reach the station "
                   "(patient data; use it on a closed network only)", err=True)
    if (cert is None) != (key is None):
        raise BadInput("--cert and --key go together", hint="give both PEM files, or neither")
    kit = ctx.kit()
    tls = None
    if network or force_tls or cert is not None:  # plain HTTP only ever on this PC
        from .review import tls as review_tls
        cert = cert or (Path(get_setting(kit, "tls_cert")) if get_setting(kit, "tls_cert") else None)
        key = key or (Path(get_setting(kit, "tls_key")) if get_setting(kit, "tls_key") else None)
        if (cert is None) != (key is None):
            raise BadInput("the settings tls_cert and tls_key go together",
                           hint="fallbackkit settings set tls_key FILE (or tls_cert FILE)")
        tls = review_tls.provided(cert, key) if cert is not None else review_tls.self_signed(ctx.kit_dir, host)
    if not review.list_users(kit.db):
        say(ctx, "no user can log in yet: add one with `fallbackkit users add NAME --role supervisor`")
    if ctx.quiet:  # --quiet: only errors from the station and its server reach the console
        for name in ("fallbackkit", "waitress"):
            logging.getLogger(name).setLevel(logging.ERROR)
    server = review.make_server(ctx.kit_dir, host, port, tls=tls)  # a port in use is one line, before any "listening"
    if tls is not None:  # shown even with --quiet: clerks compare it with what their browser shows
        source = "self-signed by this kit" if tls.self_signed else f"from {tls.cert}"
        click.echo(f"TLS certificate ({source}) SHA-256 fingerprint: {tls.fingerprint}", err=True)
    say(ctx, f"review station on {review.station_url(host, port, tls=tls is not None)} — Ctrl+C to stop")
    review.run_server(server)


@cli.group()
def users() -> None:
    """People who may log in to the review station."""


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["clerk", "supervisor"]), required=True)
@click.option("--lang", type=click.Choice(["en", "fr", "nl"]), default="en", show_default=True)
@pass_kit
def users_add(ctx: KitContext, name: str, role: str, lang: str) -> None:
    """Add NAME; the password is asked twice on a terminal, read from stdin otherwise."""
    from .review import add_user
    add_user(ctx.kit().db, name, role, _read_password(), ctx.actor, lang)
    click.echo(f"user {name} added ({role}, {lang})")


def _read_password() -> str:
    """Asked twice on a terminal, one line of stdin otherwise (scripts)."""
    if sys.stdin.isatty():
        return click.prompt("password", hide_input=True, confirmation_prompt=True)
    return sys.stdin.readline().rstrip("\r\n")


@users.command("unlock")
@click.argument("name")
@pass_kit
def users_unlock(ctx: KitContext, name: str) -> None:
    """Lift the lock after too many wrong passwords for NAME (check who is asking first)."""
    from .review.users import unlock_user
    was = unlock_user(ctx.kit().db, name, ctx.actor)
    click.echo(f"user {name} unlocked" if was else f"user {name} was not locked; failed attempts cleared")


@users.command("disable")
@click.argument("name")
@pass_kit
def users_disable(ctx: KitContext, name: str) -> None:
    """NAME can no longer log in; their open sessions end now (history and decisions stay)."""
    from .review.users import disable_user
    ended = disable_user(ctx.kit().db, name, ctx.actor)
    click.echo(f"user {name} disabled ({ended} open session{'s' if ended != 1 else ''} ended)")


@users.command("enable")
@click.argument("name")
@pass_kit
def users_enable(ctx: KitContext, name: str) -> None:
    """Let a disabled NAME log in again."""
    from .review.users import enable_user
    enable_user(ctx.kit().db, name, ctx.actor)
    click.echo(f"user {name} enabled")


@users.command("passwd")
@click.argument("name")
@pass_kit
def users_passwd(ctx: KitContext, name: str) -> None:
    """Set a new password for NAME (asked twice, or one line on stdin); their sessions end."""
    from .review.users import set_password
    ended = set_password(ctx.kit().db, name, _read_password(), ctx.actor)
    click.echo(f"password of {name} changed ({ended} open session{'s' if ended != 1 else ''} ended)")


@users.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_kit
def users_list(ctx: KitContext, as_json: bool) -> None:
    from .review import list_users
    rows = list_users(ctx.kit().db)
    if as_json:
        emit_json(rows)
    else:
        table(rows, ["name", "role", "lang", "active", "locked", "created_at", "created_by"])


# --- export: export, report, backup, restore, check (fallbackkit/export/) ---------------------
@cli.command("export")
@click.option("--format", "fmt", type=click.Choice(["csv", "json", "fhir"]), required=True,
              help="csv: directory with readings.csv and worklist.csv; json: one file; fhir: directory of bundles.")
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path))
@click.option("--ward", help="Only forms of this ward.")
@click.option("--since", help="Only what was scanned or reviewed since this ISO date/time; fhir: LAST = only what"
                               " changed since the last export (the kit's export record).")
@click.option("--mrn-system", help="FHIR identifier system of the hospital's MRNs (default: the kit setting"
                                   " mrn_system, else a kit URN).")
@click.option("--skip-entered", is_flag=True, help="fhir: leave out items clerks marked entered or not needed.")
@click.option("--tz", help="fhir: time zone of the times written on paper (IANA name; default: the kit setting tz).")
@click.option("--max-entries", type=click.IntRange(min=1),
              help="fhir: cut a patient's bundle into self-contained parts of at most N entries (e.g. 8).")
@click.option("--bundle-type", type=click.Choice(["transaction", "batch"]), default="transaction", show_default=True,
              help="fhir: transaction (all or nothing, references inside the bundle) or batch (each entry on its"
                   " own, references by identifier).")
@click.option("--page-images", type=click.Choice(["binary", "inline", "none"]), default="binary", show_default=True,
              help="fhir: how each scanned page travels: a Binary the DocumentReference points to, inside the"
                   " DocumentReference (attachment.data), or not at all (hash and size only).")
@click.option("--json", "as_json", is_flag=True)
@pass_kit
def export_cmd(ctx: KitContext, fmt: str, out_path: Path, ward: str | None, since: str | None,
               mrn_system: str | None, skip_entered: bool, tz: str | None, max_entries: int | None,
               bundle_type: str, page_images: str, as_json: bool) -> None:
    """Export readings and the re-entry worklist (csv/json) or FHIR R4 transaction bundles (fhir)."""
    from .export import export_fhir, export_table
    if fmt == "fhir":
        result = export_fhir(ctx.kit(), out_path, ward, since, mrn_system, skip_entered, tz, max_entries,
                             actor=ctx.actor, page_images=page_images, bundle_type=bundle_type)
        summary = (f"{result['bundles']} bundles for {result['patients']} patients ({result['resources']} resources, {result['items_exported']} items)"
                   f" in {out_path}; {result['pending']} items not exported yet, listed in {result['pending_file']}")
        if result["withdrawn"]:
            summary += f"; {result['withdrawn']} resources sent before are withdrawn (entered-in-error)"
        if result["since_last"]:
            summary += f"; {result['unchanged_since_last']} items unchanged since the last export left out"
        summary += (f"; export record {result['export_id']}" if result["export_id"] is not None
                    else "; not recorded (the kit is read-only): a later --since LAST or withdrawal will not know it")
        if result["skipped_entered"]:
            summary += f"; {result['skipped_entered']} items left out as already entered"
        for note in result["identity_notes"]:
            summary += f"\nnote: {note}"
        if result["page_image_problems"]:
            problems = result["page_image_problems"]
            summary += (f"\nwarning: {len(problems)} scanned pages exported without their page image; first: "
                        f"{problems[0]['problem']}")
        if result["removed_stale"]:
            say(ctx, f"removed {len(result['removed_stale'])} bundles of an earlier export that no longer apply")
    else:
        result = export_table(ctx.kit(), fmt, out_path, ward, since, actor=ctx.actor)
        summary = f"{result['readings']} readings" + (
            f", {result['worklist']} worklist items" if result["worklist"] is not None else "") + \
            f" -> {', '.join(result['files'])}"
        if result["note"]:
            say(ctx, f"note: {result['note']}")
    if as_json:
        emit_json(result)
    else:
        click.echo(summary)
    say(ctx, "these files hold patient data: written readable by you only (mode 0600); keep them that way")


@cli.command("report")
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path), help="report.pdf or report.html")
@click.option("--ward", help="Only this ward.")
@click.option("--json", "as_json", is_flag=True, help="Also print the figures as JSON.")
@pass_kit
def report_cmd(ctx: KitContext, out_path: Path, ward: str | None, as_json: bool) -> None:
    """The reconciliation report: what is left to do, missing sheets, conflicts, backlog, progress."""
    from .export import write_report
    result = write_report(ctx.kit(), out_path, ward)
    if as_json:
        emit_json(result)
    else:
        click.echo(f"report written to {result['file']}")
        for line in result["todo"]:
            click.echo(f"  - {line}")
    say(ctx, "the report holds patient data: written readable by you only (mode 0600)")


@cli.command("backup")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@pass_kit
def backup_cmd(ctx: KitContext, out_path: Path) -> None:
    """Copy the store (safe while in use), verify the copy, then put it in place."""
    from .export import backup
    result = backup(ctx.kit(), out_path, ctx.actor)
    click.echo(f"backup of kit {result['kit_id']} written to {result['file']}: {result['tables']} tables, "
               f"{result['rows']} rows, verified")
    say(ctx, "the backup holds patient data (mode 0600); the kit's secret.key and archive/ are not in it: "
             "back up the kit directory too")


@cli.command("restore")
@click.argument("backup_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Restore a store that belongs to another kit.")
@pass_kit
def restore_cmd(ctx: KitContext, backup_file: Path, force: bool) -> None:
    """Replace the kit's store with a verified backup (the current store is kept as a safety copy)."""
    from .export import restore
    result = restore(ctx.kit(for_restore=True), backup_file, ctx.actor, force)
    click.echo(f"restored kit {result['kit_id']} from {result['restored_from']} ({result['rows']} rows)")
    say(ctx, f"the store as it was before is kept in {result['safety_copy']}" if result["safety_copy"]
        else "there was no store to keep: it was missing")
    if result["warning"]:
        say(ctx, f"warning: {result['warning']}")


@cli.command("check")
@click.option("--archive", is_flag=True, help="Also re-hash every archived scan original.")
@click.option("--json", "as_json", is_flag=True)
@pass_kit
def check_cmd(ctx: KitContext, archive: bool, as_json: bool) -> None:
    """Integrity check of the store and verification of the audit chain; exits non-zero on a failure."""
    from .export import check
    result = check(ctx.kit(), archive)
    if as_json:
        emit_json(result)
    else:
        head = result["audit_head"]
        click.echo(f"store integrity ok; {result['audit_rows']} audit rows, chain intact up to the head "
                   f"kit.json records (last row {head['last_id']}); every review, link, undo, role and census "
                   f"change has its audit row"
                   + ("; every archived original present and unchanged" if archive else "")
                   + ("; the kit is read-only" if result["read_only"] else ""))
    for warning in result["warnings"]:
        click.echo(f"warning: {warning}", err=True)


def main() -> None:
    try:
        cli(prog_name="fallbackkit")
    except FallbackkitError as exc:  # errors raised outside a command invocation
        click.echo(f"error: {exc}", err=True)
        sys.exit(int(exc.exit_code))
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


__all__ = ["cli", "main", "ExitCode"]

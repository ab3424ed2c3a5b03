"""`embedlog schemas ...` and `embedlog registry serve`: the schema registry from the shell
(embedlog/registry/).

    embedlog schemas list [--deleted] [--prefix P]
    embedlog schemas get SUBJECT [--version V] | get --id ID
    embedlog schemas register SUBJECT --schema TEXT|--file PATH [--type AVRO] [--reference NAME=SUBJECT:VERSION]
    embedlog schemas check SUBJECT --schema TEXT|--file PATH [--version V]   (exit 1 if incompatible)
    embedlog schemas delete SUBJECT [--version V] [--permanent]
    embedlog schemas config [SUBJECT] [--set LEVEL | --delete]
    embedlog registry serve [--listen 127.0.0.1:8081]

Read commands on a directory whose `_schemas` topic does not exist yet answer as an empty
registry and create nothing.
"""
from __future__ import annotations

import contextlib

import click

from ._common import (
    CliError,
    Failed,
    Group,
    dir_option,
    echo_json,
    emit_rows,
    note,
    open_log,
    output_options,
)

SCHEMAS_TOPIC = "_schemas"


@click.group(cls=Group)
def schemas():
    """Register, look up and check schemas (the _schemas topic)."""


@click.group(cls=Group)
def registry():
    """Serve the schema registry over Confluent's REST API."""


@contextlib.contextmanager
def _registry(*, create: bool = False):
    """The directory's Registry (None for a read when there is no _schemas topic yet);
    registry errors become one `Error:` line with Confluent's error code."""
    from embedlog.registry import RegistryError, registry_for
    with open_log() as log:
        reg = registry_for(log) if create or SCHEMAS_TOPIC in log.topics() else None
        try:
            yield reg
        except RegistryError as e:
            raise CliError(f"{e.message} (error_code {e.error_code})") from None


def _schema_text(schema: str | None, path: str | None) -> str:
    if (schema is None) == (path is None):
        raise click.UsageError("give the schema as --schema TEXT or --file PATH (- for stdin), one of them")
    if schema is not None:
        return schema
    try:
        with click.open_file(path, "r", encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise CliError(f"cannot read --file {path}: {e.strerror or e}") from None


def _references(pairs) -> list[dict]:
    out = []
    for item in pairs:
        name, eq, rest = item.partition("=")
        subject, colon, version = rest.rpartition(":")
        if not eq or not colon or not name or not subject or not version.isdigit():
            raise click.BadParameter(f"{item!r}: use NAME=SUBJECT:VERSION", param_hint="--reference")
        out.append({"name": name, "subject": subject, "version": int(version)})
    return out


def _schema_options(f):
    f = click.option("--reference", "references", multiple=True, metavar="NAME=SUBJECT:VERSION",
                     help="A schema reference (repeatable): the name the schema uses, and the subject version "
                          "holding it.")(f)
    f = click.option("--type", "schema_type", default="AVRO", show_default=True,
                     type=click.Choice(["AVRO", "JSON", "PROTOBUF"], case_sensitive=False),
                     help="The schema's format (Confluent's schemaType).")(f)
    f = click.option("--file", "path", metavar="PATH", help="Read the schema from PATH (- for stdin).")(f)
    f = click.option("--schema", metavar="TEXT", help="The schema text.")(f)
    return f


def _doc(s) -> dict:
    doc = {"subject": s.subject, "version": s.version, "id": s.id, "schemaType": s.schema_type,
           "references": [dict(r) for r in s.references], "schema": s.schema}
    if s.deleted:
        doc["deleted"] = True
    return {k: v for k, v in doc.items() if v is not None}


@schemas.command("list")
@dir_option
@click.option("--deleted", is_flag=True, help="Include soft-deleted subjects and versions.")
@click.option("--prefix", default="", metavar="P", help="Only subjects starting with P.")
@output_options()
def list_(deleted, prefix, fmt):
    """Subjects with their versions and latest schema id."""
    with _registry() as reg:
        rows = []
        for subject in reg.subjects(deleted=deleted, prefix=prefix) if reg else []:
            versions = reg.versions(subject, deleted=deleted)
            latest = reg.get_version(subject, max(versions), deleted=True)
            rows.append({"subject": subject, "versions": versions, "latest_version": latest.version,
                         "latest_id": latest.id, "schemaType": latest.schema_type})
    shown = rows if fmt != "table" else [{**r, "versions": ",".join(map(str, r["versions"]))} for r in rows]
    emit_rows(fmt, shown, ["SUBJECT", "VERSIONS", "LATEST-ID", "TYPE"], ["subject", "versions", "latest_id", "schemaType"])


@schemas.command()
@dir_option
@click.argument("subject", required=False)
@click.option("--version", "-v", default="latest", show_default=True, help="A version number or latest.")
@click.option("--id", "schema_id", type=int, help="The schema with this id (instead of SUBJECT).")
@click.option("--deleted", is_flag=True, help="Also find soft-deleted versions.")
@output_options(nl=False)
def get(subject, version, schema_id, deleted, fmt):
    """Print a subject's schema (the latest unless --version), or the schema with --id."""
    if (subject is None) == (schema_id is None):
        raise click.UsageError("give SUBJECT or --id ID, one of them")
    with _registry() as reg:
        if reg is None:
            raise CliError(f"Subject '{subject}' not found. (error_code 40401)" if subject else
                           f"Schema {schema_id} not found (error_code 40403)")
        s = reg.get_by_id(schema_id) if schema_id is not None else reg.get_version(subject, version, deleted=deleted)
    if fmt == "json":
        echo_json(_doc(s))
    else:
        click.echo(s.schema)


@schemas.command()
@dir_option
@click.argument("subject")
@_schema_options
@output_options(nl=False)
def register(subject, schema, path, schema_type, references, fmt):
    """Register a schema under SUBJECT.

    A schema the subject already has keeps its version; one that breaks the subject's
    compatibility level is refused with error 409."""
    text = _schema_text(schema, path)
    refs = _references(references)
    with _registry(create=True) as reg:
        s = reg.register(subject, text, schema_type, refs)
    if fmt == "json":
        echo_json({"subject": s.subject, "version": s.version, "id": s.id})
    else:
        click.echo(f"subject {s.subject} version {s.version} id {s.id}")


@schemas.command()
@dir_option
@click.argument("subject")
@_schema_options
@click.option("--version", "-v", default=None,
              help="Check against this version only (default: what registering would check).")
@output_options(nl=False)
def check(subject, schema, path, schema_type, references, version, fmt):
    """Would SUBJECT accept this schema? Prints why not and exits 1 if not."""
    text = _schema_text(schema, path)
    refs = _references(references)
    with _registry() as reg:
        if reg is None:
            messages = []
        else:
            messages = reg.check_compatibility(subject, text, schema_type, refs, version=version)
            level = reg.level(subject)
    if fmt == "json":
        echo_json({"is_compatible": not messages, "messages": messages})
    elif not messages:
        click.echo("compatible")
    else:
        click.echo(f"incompatible ({level}):")
        for m in messages:
            click.echo(f"  {m}")
    if messages:
        raise Failed("incompatible")


@schemas.command()
@dir_option
@click.argument("subject")
@click.option("--version", "-v", default=None, help="Delete this version only (a number or latest).")
@click.option("--permanent", is_flag=True, help="Drop what was soft-deleted before (Confluent's ?permanent=true).")
@output_options(nl=False)
def delete(subject, version, permanent, fmt):
    """Soft-delete a subject or one version (--permanent, afterwards: for good)."""
    with _registry(create=True) as reg:
        if version is None:
            versions = reg.delete_subject(subject, permanent=permanent)
        else:
            versions = [reg.delete_version(subject, version, permanent=permanent)]
    if fmt == "json":
        echo_json(versions)
    else:
        what = "permanently deleted" if permanent else "soft-deleted"
        click.echo(f"{subject}: {what} version{'s' if len(versions) != 1 else ''} {', '.join(map(str, versions))}")


@schemas.command()
@dir_option
@click.argument("subject", required=False)
@click.option("--set", "level", metavar="LEVEL",
              help="Set the compatibility level: NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, "
                   "FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE.")
@click.option("--delete", "delete_", is_flag=True, help="Drop the subject's level (it then follows the global one).")
@output_options(nl=False)
def config(subject, level, delete_, fmt):
    """Show or set the compatibility level of SUBJECT, or the global one."""
    if level and delete_:
        raise click.UsageError("--set and --delete exclude each other")
    with _registry(create=bool(level or delete_)) as reg:
        if level:
            value = reg.set_compatibility(level, subject)
        elif delete_:
            reg.delete_compatibility(subject)
            value = reg.get_compatibility(subject, default_to_global=True)
        elif reg is None:
            value = "BACKWARD"
        else:
            value = reg.get_compatibility(subject, default_to_global=True)
    if fmt == "json":
        echo_json({"subject": subject, "compatibilityLevel": value})
    else:
        click.echo(value)


@registry.command()
@dir_option
@click.option("--listen", default="127.0.0.1:8081", show_default=True, metavar="HOST:PORT",
              help="Address to serve Confluent's schema registry REST API on (port 0: any free one).")
def serve(listen):
    """Serve the schema registry over Confluent's REST API until interrupted."""
    from embedlog.registry._http import run_forever
    with open_log() as log:
        try:
            run_forever(log, listen, on_ready=lambda url: note(f"schema registry for {log.path} on {url}"))
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--listen") from None
        except OSError as e:
            raise CliError(f"cannot listen on {listen}: {e.strerror or e}") from None

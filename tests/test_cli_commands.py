"""Subcommands that installed packages add to crm-engine (the crm_engine.commands entry points)."""

from __future__ import annotations

import argparse
from importlib.metadata import EntryPoint

import engine.cli
from engine.cli import COMMANDS_GROUP, build_parser, main
from engine.errors import InputError


def test_demo_and_sandbox_come_from_this_projects_entry_points() -> None:
    args = build_parser().parse_args(["demo", "--contacts", "50", "--connectors", "hubspot"])
    assert args.handler.__module__ == "sandbox.demo"
    assert (args.db, args.contacts, args.connectors) == ("out/demo.duckdb", 50, "hubspot")
    args = build_parser().parse_args(["sandbox", "hubspot", "zoho", "--port", "9000"])
    assert args.handler.__module__ == "sandbox.demo"
    assert (args.connectors, args.port, args.contacts) == (["hubspot", "zoho"], 9000, None)


def register_hello(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("hello", help="say hello")
    p.add_argument("--name", default="world")
    p.set_defaults(handler=_hello)


def _hello(args: argparse.Namespace) -> int:
    if not args.name:
        raise InputError("--name", "must not be empty")
    print(f"hello {args.name}")
    return 0


def test_an_installed_command_runs_like_a_built_in_one(monkeypatch, capsys) -> None:
    points = [EntryPoint("hello", f"{__name__}:register_hello", COMMANDS_GROUP),
              EntryPoint("broken", "no_such_module_anywhere:register", COMMANDS_GROUP)]
    monkeypatch.setattr(engine.cli, "entry_points",
                        lambda group: points if group == COMMANDS_GROUP else [])

    assert main(["hello", "--name", "Ada"]) == 0
    out, err = capsys.readouterr()
    assert out == "hello Ada\n"
    # A package whose command cannot load is named, and the others still work.
    assert "command 'broken' (no_such_module_anywhere:register) not loaded" in err

    assert main(["hello", "--name", ""]) == 2  # the engine's error handling applies
    assert "error: --name: must not be empty" in capsys.readouterr().err

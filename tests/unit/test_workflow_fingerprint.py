"""A workflow's fingerprint: what tells a repeated submission under an idempotency key
from another workflow."""

from __future__ import annotations

from typing import Any

from jobplane.library.workflows import Step, chain, fingerprint, group
from jobplane.service import Submission


def echo(n: int, *, pipe: bool = False, **options: Any) -> Step:
    return Step(Submission(type="demo.echo", params={"n": n}, **options), pipe_result=pipe)


def test_the_same_tree_built_twice_has_the_same_fingerprint() -> None:
    def build() -> Any:
        return chain(echo(1), group(echo(2), echo(3, priority=5)).then(echo(4, pipe=True)))

    assert fingerprint(build()) == fingerprint(build())
    assert len(fingerprint(build())) == 64  # sha256, as the request_hash column holds


def test_every_difference_a_workflow_can_have_changes_its_fingerprint() -> None:
    trees = [
        chain(echo(1), echo(2)),
        chain(echo(2), echo(1)),  # the order
        group(echo(1), echo(2)),  # the shape
        group(echo(1)).then(echo(2)),  # a then
        chain(chain(echo(1)), echo(2)),  # the nesting
        chain(echo(1), echo(2, pipe=True)),  # who takes a result
        chain(echo(1), echo(2, priority=1)),  # a step's option
        chain(echo(1), Step(Submission(type="demo.echo", params={"n": 2, "x": 1}))),
        chain(echo(1), echo(2, on_success=Submission(type="demo.echo"))),
    ]
    assert len({fingerprint(tree) for tree in trees}) == len(trees)

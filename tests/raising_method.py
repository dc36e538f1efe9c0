"""A method that always raises, for tests only: ``test_method_contract`` installs it as a
third-party plug-in (an entry point of the ``binarena.methods`` group), the way a driver and its
Ray workers find a method binarena does not ship."""

from __future__ import annotations

from binarena.methods.base import Method, Result, RunContext, register_method

MESSAGE = "raised on purpose by a test"


@register_method
class AlwaysRaises(Method):
    name = "always-raises"
    uses_budget = False
    needs_model = False

    def run(self, ctx: RunContext) -> Result:
        raise RuntimeError(f"{ctx.job.label}: {MESSAGE}")

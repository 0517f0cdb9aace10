"""griffe extension: Sphinx roles in docstrings (``:class:`Router```) shown as code, not as raw text.

The package's docstrings are Markdown-ish with a few Sphinx roles; rewriting them here keeps the
source as it is. They become code, not links: a link that cannot resolve would fail ``--strict``.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|exc|data|obj|const):`~?([^`]+)`")


class SphinxRolesAsCode(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and ":`" in obj.docstring.value:
            obj.docstring.value = _ROLE.sub(r"`\1`", obj.docstring.value)

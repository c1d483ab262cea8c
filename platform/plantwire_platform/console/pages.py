"""Every page of the console, declared once: its path under ``/console``, its template and
script, the catalogue key of its title, and whether the navigation lists it. The routes, the
navigation, the screenshot tests and the catalogue test all read this list; a new page is one
entry here, a template, a script and its words (``docs/console.md``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Page:
    name: str
    """Its path under ``/console/`` ('' for the home page) and the stem of its template and
    script."""
    title: str
    """Catalogue key of its title."""
    nav: bool = True
    """Listed in the navigation (pages that need a subject, like one machine, are not)."""
    signed_in: bool = True
    """Needs a signed-in person (every page but the sign-in page)."""

    @property
    def path(self) -> str:
        return f"/console/{self.name}"

    @property
    def template(self) -> str:
        return f"{self.name or 'home'}.html"

    @property
    def script(self) -> str:
        return f"{self.name or 'home'}.js"


PAGES: Final = (
    Page("", "page.home.title"),
    Page("floor", "page.floor.title"),
    Page("machine", "page.machine.title", nav=False),
    Page("indicators", "page.indicators.title"),
    Page("sharing", "page.sharing.title"),
    Page("registry", "page.registry.title"),
    Page("groups", "page.groups.title"),
    Page("signin", "page.signin.title", nav=False, signed_in=False),
)
"""The pages, in navigation order."""
BY_NAME: Final = {page.name: page for page in PAGES}

"""The build compiles the translations: ``bot/locale/*/LC_MESSAGES/kontext.po`` to the
``.mo`` files ``gettext`` reads (bot.i18n), so a wheel, ``pip install .`` and the
editable install ``pip install -e .`` all carry them and nobody commits a binary.

Everything else about the package is in pyproject.toml; this file only adds the step,
as setuptools documents for a custom build step (a ``build_py`` subclass).
"""

from __future__ import annotations

from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from setuptools import setup
from setuptools.command.build_py import build_py

LOCALE = Path(__file__).resolve().parent / "bot" / "locale"


def compile_catalogs(locale_dir: Path) -> list[Path]:
    """Every ``.po`` under ``locale_dir`` compiled beside itself; a fuzzy entry is left
    out, as ``pybabel compile`` does without ``--use-fuzzy``."""
    written = []
    for po in sorted(locale_dir.glob("*/LC_MESSAGES/*.po")):
        with po.open("rb") as source:
            catalog = read_po(source, locale=po.parent.parent.name)
        mo = po.with_suffix(".mo")
        with mo.open("wb") as target:
            write_mo(target, catalog, use_fuzzy=False)
        written.append(mo)
    return written


class build_py_with_catalogs(build_py):
    def run(self) -> None:
        # Before the copy: package data (``locale/*/LC_MESSAGES/*.mo``) is listed when
        # first asked for, so the new files are part of it; in an editable install the
        # package is the source tree, where they now are.
        compile_catalogs(LOCALE)
        super().run()


if __name__ == "__main__":  # as setuptools runs it; tests import compile_catalogs
    setup(cmdclass={"build_py": build_py_with_catalogs})

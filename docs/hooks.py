"""MkDocs hook (mkdocs.yml `hooks:`): the Compatibility page's tables are
generated on every build from docs/data/conformance/*.json by gen_compat.py,
never written by hand. A page without the marker, or data that does not hold
what its file name says, fails the build."""
import importlib.util
from pathlib import Path

from mkdocs.exceptions import PluginError

PAGE = 'compatibility.md'
MARKER = '<!-- conformance-tables -->'

_spec = importlib.util.spec_from_file_location(
    '_evioloop_gen_compat', Path(__file__).resolve().parent / 'gen_compat.py')
gen_compat = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen_compat)


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri != PAGE:
        return markdown
    if markdown.count(MARKER) != 1:
        raise PluginError(f'{PAGE} must hold the marker {MARKER} exactly once')
    try:
        tables = gen_compat.render()
    except gen_compat.DataError as exc:
        raise PluginError(f'{PAGE}: {exc}') from None
    return markdown.replace(MARKER, tables)

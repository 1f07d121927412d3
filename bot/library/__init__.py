"""The toolkit resource library: loaded from content/ (and an organisation's overrides), searched,
and offered at the right moments. Plain Python: nothing here knows about Slack."""

from bot.library.library import Library, Moment, ResultsPage, Surfacing
from bot.library.loader import ContentError, load_library
from bot.library.model import Entry

__all__ = ["ContentError", "Entry", "Library", "Moment", "ResultsPage", "Surfacing", "load_library"]

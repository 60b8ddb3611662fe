"""A duration in its two largest units: the panel's words and the terminal's share the cut."""

from __future__ import annotations

Units = tuple[str, str, str, str]  # what follows days, hours, minutes and seconds


def words(whole: int, units: Units) -> str:
    """``whole`` seconds (at least 0) as ``3d 4h``, ``2h 05m``, ``3m 05s`` or ``45s`` (with
    ``units`` ``d h m s``): the smaller unit two digits wide, except hours after days."""
    minutes, secs = divmod(max(whole, 0), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    day, hour, minute, second = units
    if days:
        return f"{days}{day} {hours}{hour}"
    if hours:
        return f"{hours}{hour} {minutes:02d}{minute}"
    if minutes:
        return f"{minutes}{minute} {secs:02d}{second}"
    return f"{secs}{second}"

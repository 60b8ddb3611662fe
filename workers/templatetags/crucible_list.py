"""``{% live_result_list cl %}``: Django's ``result_list``, written by the change list itself
when it can (``TaskChangeList.result_context``), for the lists refreshed while open."""

from __future__ import annotations

from typing import Any

from django import template
from django.contrib.admin.templatetags.admin_list import result_list
from django.contrib.admin.templatetags.base import InclusionAdminNode
from django.template.base import Parser, Token

register = template.Library()


def live_result_list(cl: Any) -> dict[str, Any]:
    own = getattr(cl, "result_context", None)
    return own() if own is not None else result_list(cl)


@register.tag(name="live_result_list")
def live_result_list_tag(parser: Parser, token: Token) -> InclusionAdminNode:
    return InclusionAdminNode("live_result_list", parser, token, func=live_result_list,
                              template_name="change_list_results.html", takes_context=False)

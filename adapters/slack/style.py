"""How the bot's answers look in Slack: mrkdwn, ``<@U…>`` mentions, ``<!date…>`` times.

User-provided text (a prompt, a note) is echoed with ``&``, ``<`` and ``>`` escaped, the
three characters Slack's formatting docs call control characters
(https://api.slack.com/reference/surfaces/formatting#escaping): unescaped, a prompt
containing ``<!channel>`` or ``<!subteam^…>`` would make the bot's public post ping a
whole channel or group on behalf of someone the workspace may not allow to.
"""

from __future__ import annotations

from datetime import datetime

from bot.chat.texts import ChatStyle, CommandNames


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackStyle(ChatStyle):
    workspace_word = "workspace"
    commands = CommandNames(
        usage="/kontext <what to change> [options]",
        examples=(
            "/kontext make it a watercolor   (opens a form to attach the image)",
            "@kontext replace the background with a beach at sunset --ar 16:9   (with an image)",
            "@kontext now make her wave --seed 42   (in a thread: edits its latest image)",
        ),
        info=(
            "/kontext credits   your balance",
            "/kontext history   your last 10 edits, with links to the results",
            "/kontext help   this text",
        ),
        admin=(
            "/kontext grant @someone 600",
            "/kontext allowance [@someone] N [daily|weekly|monthly|never]",
            "/kontext allowance [@someone] off",
            "/kontext pause",
            "/kontext resume",
            "/kontext history @someone",
            "/kontext ledger @someone",
            "/kontext top",
        ),
    )

    def bold(self, text: str) -> str:
        return f"*{text}*"

    def when(self, moment: datetime) -> str:
        # Slack shows this in each reader's own time zone; the text after | is the
        # fallback for clients that cannot.
        return (
            f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} at {{time}}|"
            f"{super().when(moment)}>"
        )

    def echo(self, text: str) -> str:
        return escape(text)

    def link(self, url: str, label: str) -> str:
        return f"<{url}|{label}>"

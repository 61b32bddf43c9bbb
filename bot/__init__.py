"""kontext-bot: the platform-neutral core.

Adapters (Discord, Slack, console) turn platform events into ``EditRequest``s and hand
them to ``bot.jobs.service.KontextService``; everything else (credits, jobs, providers,
storage) lives here so that each platform behaves the same way.
"""

__version__ = "0.1.0"

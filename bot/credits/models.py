"""The named models people choose with ``--model NAME``: what each costs and which
provider serves it under which model id.

The operator lists them as ``[[models]]`` (docs/configuration.md); without that list
there is one model, the provider's ``provider.model`` at ``credits.cost_per_image``, so
an install that never heard of models behaves as before. A job stores the model's name
(``jobs.model_name``) and its cost, so a re-roll, a restart or a failover keeps both;
the provider is told the model's id for that provider with each request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot.credits.model_profiles import ModelProfile, ProfileOverrides, profile_for
from bot.errors import UserInputError
from bot.i18n import _, ngettext, number

if TYPE_CHECKING:
    from bot.config import Settings


@dataclass(frozen=True)
class Model:
    """One choice a user has. ``ids``: the providers that serve it, each with its model
    id there (a provider not in it does not serve this model)."""

    name: str
    cost: int
    ids: Mapping[str, str] = field(default_factory=dict)
    default: bool = False
    # Allowed only in the scopes whose override lists it (``models = [...]``).
    restricted: bool = False
    # Per reference image beyond the first (``cost_per_extra_image``): core.today bills
    # FLUX.2 by its inputs, so an operator may pass that on.
    extra_cost: int = 0
    kind: str = "edit"  # edit | upscale (``--upscale N``, docs/models.md)
    overrides: ProfileOverrides = field(default_factory=ProfileOverrides)

    def id_for(self, provider: str) -> str | None:
        return self.ids.get(provider)

    def profile(self, provider: str) -> ModelProfile:
        """What this model takes at ``provider`` (bot.credits.model_profiles)."""
        return profile_for(provider, self.ids.get(provider, ""), self.overrides, self.kind)

    @property
    def main_profile(self) -> ModelProfile:
        """The profile of the first provider serving it: what help and refusals name."""
        first = next(iter(self.ids), None)
        if first is not None:
            return self.profile(first)
        return profile_for("", "", self.overrides, self.kind)

    @property
    def upscales(self) -> bool:
        """An upscaler: used by ``--upscale`` only, never as an edit model."""
        return self.kind == "upscale"

    @property
    def scales(self) -> tuple[int, ...]:
        """The scales ``--upscale`` may ask of it (empty for an edit model)."""
        upscale = self.main_profile.upscale
        return upscale.scales if upscale is not None and self.upscales else ()

    @property
    def max_images(self) -> int:
        """The most images any provider serving it takes."""
        return max((self.profile(p).max_images for p in self.ids), default=1)

    def cost_for(self, images: int) -> int:
        """One amount for the job, reserved, charged or refunded whole:
        ``cost_per_image + cost_per_extra_image × (images − 1)``."""
        return self.cost + self.extra_cost * max(images - 1, 0)


class Catalogue:
    """The models in the operator's order; exactly one is the default."""

    def __init__(self, models: Iterable[Model]) -> None:
        self.models: tuple[Model, ...] = tuple(models)
        defaults = [m for m in self.models if m.default]
        if len(defaults) != 1:
            raise ValueError("exactly one model must be the default")
        if defaults[0].upscales:
            raise ValueError("the default model must be an edit model, not an upscaler")
        self.default = defaults[0]
        self._by_name = {m.name.lower(): m for m in self.models}

    @classmethod
    def single(cls, name: str, cost: int, ids: Mapping[str, str]) -> Catalogue:
        """The one model of an install without ``[[models]]``."""
        return cls([Model(name=name, cost=cost, ids=dict(ids), default=True)])

    @property
    def several(self) -> bool:
        """Whether people have a choice at all: only then do help, credits and the
        platforms' forms mention models."""
        return len(self.models) > 1

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)

    def get(self, name: str | None) -> Model | None:
        """The model of that name (any case); None names the default."""
        if name is None:
            return self.default
        return self._by_name.get(name.strip().lower())

    def choose(self, name: str | None) -> Model:
        """The model asked for, or a refusal that lists what there is (free)."""
        model = self.get(name)
        if model is None:
            raise UserInputError(
                _("I don't know the model '{name}'. Choose one of: {models}.").format(
                    name=name, models=self.price_list()
                )
            )
        return model

    @property
    def editors(self) -> tuple[Model, ...]:
        """The edit models: what ``--model`` offers for an edit (upscalers are not)."""
        return tuple(m for m in self.models if not m.upscales)

    @property
    def upscalers(self) -> tuple[Model, ...]:
        return tuple(m for m in self.models if m.upscales)

    def upscaler(self, name: str | None = None) -> Model | None:
        """The upscaler ``--upscale`` uses: the one named (None when that name is no
        upscaler), else the first configured; None when none is configured."""
        if name is None:
            return next(iter(self.upscalers), None)
        model = self.get(name)
        return model if model is not None and model.upscales else None

    @property
    def max_images(self) -> int:
        """The most images any configured model takes (Discord's ``image2`` … options)."""
        return max((m.max_images for m in self.editors), default=1)

    def taking(self, images: int) -> Model | None:
        """A configured model that takes this many images, the cheapest first, to name
        in a refusal; None when none does."""
        able = [m for m in self.editors if m.max_images >= images]
        return min(able, key=lambda m: m.cost_for(images)) if able else None

    def choices(self, most: int) -> list[tuple[str, str]]:
        """(value, label) pairs for a form's model select (Discord's choices, Slack's
        static select); none when there is no choice to make, so single-model installs
        look as before, and none when there are more models than the platform's list
        may hold (``most``): the platform would refuse the whole form or command, while
        ``--model NAME`` typed in the prompt still works."""
        editors = self.editors
        if len(editors) < 2 or len(editors) > most:
            return []
        return [(m.name, f"{m.name} · {m.cost} credits") for m in editors]

    def price_list(self) -> str:
        """``pro (120 credits, default), max (240 credits)``, in the language in force."""
        return ", ".join(_price(m) for m in self.models)


def _price(model: Model) -> str:
    n = number(model.cost)
    if model.default:
        return ngettext(
            "{model} ({n} credit, default)", "{model} ({n} credits, default)", model.cost
        ).format(model=model.name, n=n)
    return ngettext("{model} ({n} credit)", "{model} ({n} credits)", model.cost).format(
        model=model.name, n=n
    )


def short_name(model_id: str) -> str:
    """The name of the implicit single model: ``black-forest-labs/flux-kontext-pro`` is
    ``flux-kontext-pro``."""
    return model_id.rsplit("/", 1)[-1] or model_id


def configured_providers(settings: Settings) -> dict[str, str]:
    """Each configured provider (primary, then fallbacks) with its own ``model``."""
    config = settings.provider
    return {config.name: config.model, **{f.name: f.model for f in config.fallbacks}}


def catalogue_for(settings: Settings, default_cost: int | None = None) -> Catalogue:
    """The models of ``settings``; without ``[[models]]`` the one implicit model at
    ``default_cost`` (the provider's capabilities; else ``credits.cost_per_image``)."""
    providers = configured_providers(settings)
    if not settings.models:
        cost = settings.credits.cost_per_image if default_cost is None else default_cost
        return Catalogue.single(short_name(settings.provider.model), cost, providers)
    models = []
    for entry in settings.models:
        serving = entry.providers or list(providers)
        ids = {
            name: entry.ids.get(name) or entry.model or own
            for name, own in providers.items()
            if name in serving
        }
        models.append(
            Model(
                name=entry.name,
                cost=entry.cost_per_image,
                ids=ids,
                default=entry.default,
                restricted=entry.restricted,
                extra_cost=entry.cost_per_extra_image,
                kind=entry.kind,
                overrides=ProfileOverrides(max_images=entry.max_images),
            )
        )
    return Catalogue(models)

"""ComfyUI workflows in API format, and how the bot fills one in for a request.

A workflow is the graph ComfyUI's "Export (API)" writes: ``{node_id: {"class_type",
"inputs", "_meta": {"title"}}}``. The bot never guesses which node is which from the
graph's shape: it finds the nodes it fills by their titles (docs/providers.md), so an
operator's own workflow works after renaming a few nodes in ComfyUI:

- ``kontext prompt``: the text encoder (``text``, or ``prompt``/``t5xxl``/``clip_l``),
- ``kontext image``: the ``LoadImage`` node that reads the uploaded input image,
- ``kontext seed``: the sampler or noise node (``seed`` or ``noise_seed``),
- ``kontext size`` (optional): a latent node with ``width`` and ``height``.

A workflow without the nodes it needs is refused when the bot starts (``ConfigError``
naming each missing title), not when the first user pays for a job.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

PROMPT_TITLE = "kontext prompt"
IMAGE_TITLE = "kontext image"
SEED_TITLE = "kontext seed"
SIZE_TITLE = "kontext size"

SHIPPED_EDIT = "kontext_dev_edit.json"
SHIPPED_TEXT = "kontext_dev_text.json"
SHIPPED_UPSCALE = "upscale.json"
UPSCALE_MODEL_TITLE = "kontext upscale model"
UPSCALE_SCALE_TITLE = "kontext scale"
# The shipped upscale workflow's model is a 4x one (RealESRGAN_x4plus.pth): ImageScaleBy
# then takes its output to the asked scale (0.5 for 2x).
UPSCALE_NATIVE = 4

_PROMPT_INPUTS = ("text", "prompt", "t5xxl", "clip_l")
_SEED_INPUTS = ("seed", "noise_seed")
# ComfyUI's seeds are unsigned 64-bit (KSampler's "seed" input, max 0xffffffffffffffff).
MAX_SEED = 2**64 - 1

# The resolutions FLUX.1 Kontext was trained on (ComfyUI's FluxKontextImageScale uses
# the same list): text-to-image picks the one closest to the requested aspect ratio.
KONTEXT_RESOLUTIONS: tuple[tuple[int, int], ...] = (
    (672, 1568),
    (688, 1504),
    (720, 1456),
    (752, 1392),
    (800, 1328),
    (832, 1248),
    (880, 1184),
    (944, 1104),
    (1024, 1024),
    (1104, 944),
    (1184, 880),
    (1248, 832),
    (1328, 800),
    (1392, 752),
    (1456, 720),
    (1504, 688),
    (1568, 672),
)


class WorkflowError(ValueError):
    """A workflow file the bot cannot use; the message says why and what to do."""


def size_for_ratio(ratio: str | None) -> tuple[int, int]:
    """The Kontext resolution closest to ``ratio`` ("16:9"); 1024x1024 without one."""
    if not ratio or ":" not in ratio:
        return (1024, 1024)
    width, height = (float(part) for part in ratio.split(":", 1))
    wanted = math.log(width / height)
    return min(KONTEXT_RESOLUTIONS, key=lambda size: abs(math.log(size[0] / size[1]) - wanted))


@dataclass(frozen=True)
class Workflow:
    """A checked workflow and the ids of the nodes the bot fills in."""

    source: str  # the file, for messages
    graph: Mapping[str, Any]
    prompt_node: str
    seed_node: str
    image_node: str | None = None
    size_node: str | None = None

    def fill(
        self, *, prompt: str, seed: int, image: str | None = None, ratio: str | None = None
    ) -> dict[str, Any]:
        """A copy of the graph with this request's values in their nodes."""
        graph: dict[str, Any] = copy.deepcopy(dict(self.graph))
        inputs = graph[self.prompt_node]["inputs"]
        inputs[_first_present(inputs, _PROMPT_INPUTS)] = prompt
        for key in ("t5xxl", "clip_l"):  # CLIPTextEncodeFlux takes the prompt twice
            if key in inputs and not isinstance(inputs[key], list):
                inputs[key] = prompt
        seeds = graph[self.seed_node]["inputs"]
        seeds[_first_present(seeds, _SEED_INPUTS)] = seed % (MAX_SEED + 1)
        if self.image_node is not None and image is not None:
            graph[self.image_node]["inputs"]["image"] = image
        if self.size_node is not None:
            width, height = size_for_ratio(ratio if ratio != "match_input_image" else None)
            graph[self.size_node]["inputs"].update(width=width, height=height)
        return graph


def _first_present(inputs: Mapping[str, Any], names: tuple[str, ...]) -> str:
    return next(name for name in names if name in inputs)


def _titled(graph: Mapping[str, Any], source: str) -> dict[str, str]:
    """Lower-cased title -> node id, refusing a title the bot uses twice."""
    found: dict[str, str] = {}
    for node_id, node in graph.items():
        meta = node.get("_meta") if isinstance(node, Mapping) else None
        title = meta.get("title") if isinstance(meta, Mapping) else None
        if not isinstance(title, str):
            continue
        key = " ".join(title.lower().split())
        if key in found and key in (PROMPT_TITLE, IMAGE_TITLE, SEED_TITLE, SIZE_TITLE):
            raise WorkflowError(
                f"{source}: two nodes are titled '{key}' (#{found[key]} and #{node_id}); "
                "give the title to one node only"
            )
        found.setdefault(key, str(node_id))
    return found


def parse_workflow(graph: Any, source: str, *, needs_image: bool) -> Workflow:
    """Check a loaded graph and find its nodes; raises ``WorkflowError``."""
    if isinstance(graph, Mapping) and "nodes" in graph and "links" in graph:
        raise WorkflowError(
            f"{source}: this is ComfyUI's UI format; save the workflow with "
            "'Export (API)' (Workflow menu) and point provider.workflow at that file"
        )
    if not isinstance(graph, Mapping) or not graph:
        raise WorkflowError(f"{source}: not a workflow in ComfyUI's API format")
    for node_id, node in graph.items():
        if not (
            isinstance(node, Mapping)
            and isinstance(node.get("class_type"), str)
            and isinstance(node.get("inputs"), Mapping)
        ):
            raise WorkflowError(f"{source}: node #{node_id} has no class_type or inputs")
    titles = _titled(graph, source)
    required = [PROMPT_TITLE, *([IMAGE_TITLE] if needs_image else []), SEED_TITLE]
    missing = [title for title in required if title not in titles]
    if missing:
        raise WorkflowError(
            f"{source}: no node titled {', '.join(repr(t) for t in missing)}. In ComfyUI, "
            "give those titles to the text encoder, the LoadImage node and the sampler "
            "(right-click a node, Title), then export the workflow again with Export (API)"
        )
    problems = []
    prompt_inputs = graph[titles[PROMPT_TITLE]]["inputs"]
    if not any(name in prompt_inputs for name in _PROMPT_INPUTS):
        problems.append(f"'{PROMPT_TITLE}' has none of the inputs {', '.join(_PROMPT_INPUTS)}")
    if not any(name in graph[titles[SEED_TITLE]]["inputs"] for name in _SEED_INPUTS):
        problems.append(f"'{SEED_TITLE}' has no seed or noise_seed input")
    image_node = titles.get(IMAGE_TITLE) if needs_image else None
    if image_node is not None and "image" not in graph[image_node]["inputs"]:
        problems.append(f"'{IMAGE_TITLE}' has no image input (it should be a LoadImage node)")
    size_node = titles.get(SIZE_TITLE)
    if size_node is not None and not {"width", "height"} <= set(graph[size_node]["inputs"]):
        problems.append(f"'{SIZE_TITLE}' has no width and height inputs")
    if problems:
        raise WorkflowError(f"{source}: " + "; ".join(problems))
    return Workflow(
        source=source,
        graph=graph,
        prompt_node=titles[PROMPT_TITLE],
        seed_node=titles[SEED_TITLE],
        image_node=image_node,
        size_node=size_node,
    )


def load_workflow(path: Path, *, needs_image: bool = True) -> Workflow:
    """Read and check an operator's workflow file."""
    try:
        graph = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WorkflowError(f"{path}: file not found") from None
    except OSError as exc:
        raise WorkflowError(f"{path}: cannot be read: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WorkflowError(f"{path}: not valid JSON: {exc}") from None
    return parse_workflow(graph, str(path), needs_image=needs_image)


def shipped_workflow(name: str, *, needs_image: bool) -> Workflow:
    """One of the workflows that come with the bot (bot/providers/comfyui_workflows)."""
    text = resources.files("bot.providers").joinpath("comfyui_workflows", name).read_text("utf-8")
    return parse_workflow(json.loads(text), f"shipped {name}", needs_image=needs_image)


@dataclass(frozen=True)
class Workflows:
    """The workflow for edits and the one for text-to-image (None: not offered)."""

    edit: Workflow
    text: Workflow | None


def load_workflows(path: str) -> Workflows:
    """The shipped pair when ``path`` is empty; else the operator's workflow for edits
    (an operator's file is one graph, and it reads an image: text-to-image needs the
    shipped workflows)."""
    if not path:
        return Workflows(
            edit=shipped_workflow(SHIPPED_EDIT, needs_image=True),
            text=shipped_workflow(SHIPPED_TEXT, needs_image=False),
        )
    return Workflows(edit=load_workflow(Path(path), needs_image=True), text=None)


# -- the upscale workflow (issue 27) -------------------------------------------------------------


@dataclass(frozen=True)
class UpscaleWorkflow:
    """The shipped upscale graph: ``LoadImage`` -> ``UpscaleModelLoader`` +
    ``ImageUpscaleWithModel`` (comfy_extras/nodes_upscale_model.py: inputs
    ``model_name``; ``upscale_model`` and ``image``) -> ``ImageScaleBy`` (nodes.py:
    ``image``, ``upscale_method``, ``scale_by`` 0.01-8.0) -> ``SaveImage``."""

    graph: Mapping[str, Any]
    image_node: str
    model_node: str
    scale_node: str

    def fill(self, *, image: str, scale: int, model_file: str | None = None) -> dict[str, Any]:
        """A copy with the uploaded image, the model file (the model id at ComfyUI when
        it names a file, else the shipped one) and the scale relative to the model's."""
        graph: dict[str, Any] = copy.deepcopy(dict(self.graph))
        graph[self.image_node]["inputs"]["image"] = image
        if model_file and model_file.endswith((".pth", ".safetensors", ".pt", ".ckpt")):
            graph[self.model_node]["inputs"]["model_name"] = model_file
        graph[self.scale_node]["inputs"]["scale_by"] = scale / UPSCALE_NATIVE
        return graph


def shipped_upscale_workflow() -> UpscaleWorkflow:
    """bot/providers/comfyui_workflows/upscale.json, its nodes found by their titles."""
    text = resources.files("bot.providers").joinpath("comfyui_workflows", SHIPPED_UPSCALE)
    graph = json.loads(text.read_text("utf-8"))
    titles = _titled(graph, f"shipped {SHIPPED_UPSCALE}")
    return UpscaleWorkflow(
        graph=graph,
        image_node=titles[IMAGE_TITLE],
        model_node=titles[UPSCALE_MODEL_TITLE],
        scale_node=titles[UPSCALE_SCALE_TITLE],
    )

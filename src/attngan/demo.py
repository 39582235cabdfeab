"""``attngan demo``: a local web page that draws your sentences with attngan models (Gradio).

    pip install 'attngan[demo]'
    attngan demo                                   # http://127.0.0.1:7860, the bundled model
    attngan demo --model runs/00001-shapes-gan/model --port 8000

From Python: ``launch({"shapes": bundled_model()})``, or ``build_app(models)`` for the
``gr.Blocks`` alone.

For one caption the page shows ``num_images`` images of every generator stage (one gallery per
stage, labelled with its size), each image's per-word attention figure and the words the model did
not know. Bad input (an empty, wordless or over-long caption, a caption with no known word, a seed
or image count out of range, an unknown model) is an error message in the page: a ``gr.Error``,
which HTTP clients receive as an error event. Every input is checked on the server. Models load on
first use and stay loaded; requests wait in a queue of bounded size.

The HTTP endpoint is ``generate`` (``/gradio_api/call/generate``): inputs ``[caption, model, seed,
num_images, use_mean]``; outputs one gallery per stage (of the largest model served; a model with
fewer stages leaves the last ones empty), the attention gallery and a Markdown summary.

Gradio is imported here only, on first use, so ``import attngan`` and the CLI work without it.
Nothing is downloaded: analytics are off, there is no share link, and Gradio serves its frontend
from the installed package.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attngan.errors import AttnGANError, ModelError

if TYPE_CHECKING:
    import gradio as gr

    from attngan.pipeline import GenerationOutput, Pipeline

BUNDLED_NAME = "shapes (bundled)"
MAX_CAPTION_CHARS = 300
MAX_IMAGES = 8
MAX_SEED = 2**31 - 1
EXAMPLES = (
    "a big red heart in the top left corner",
    "a small blue square at the bottom",
    "a green star left of a yellow circle",
)
INSTALL_HINT = "the demo needs gradio: pip install 'attngan[demo]'"
CSS = """
.pixelated img { image-rendering: pixelated; }  /* small images upscaled without blur */
.wide-figures .thumbnail-item { aspect-ratio: auto; height: auto; }  /* figures uncropped */
.wide-figures .thumbnail-item img { height: auto; }
.wide-figures .grid-wrap { padding-top: 2rem; }  /* below the gallery's label */
"""


class DemoInputError(AttnGANError, ValueError):
    """A request the demo refuses; its message is shown to the user."""


def import_gradio():
    """The ``gradio`` module, imported with its analytics off; an :class:`AttnGANError` with the
    install command when it is missing."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # read when gradio is imported
    try:
        import gradio
    except ImportError:
        raise AttnGANError(INSTALL_HINT) from None
    return gradio


def model_choices(paths: Sequence[str | Path] = ()) -> dict[str, Path]:
    """The demo's models by name: each folder of ``paths`` named as given, then the bundled model
    as :data:`BUNDLED_NAME` (the first is the page's default)."""
    from attngan.assets import bundled_model

    models = {str(path): Path(path) for path in paths}
    models[BUNDLED_NAME] = bundled_model()
    return models


# --- checking requests


@dataclass(frozen=True)
class Request:
    """One checked request of the page."""

    caption: str
    model: str
    seed: int
    num_images: int
    use_mean: bool


def _whole_number(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise DemoInputError(
            f"the {what} must be a whole number from {low} to {high} (got {str(value)[:40]!r})"
        )
    return value


def check_request(
    caption: Any, model: Any, seed: Any, num_images: Any, use_mean: Any, models: Sequence[str]
) -> Request:
    """The page's inputs, checked (a :class:`DemoInputError` says what is wrong): a caption of
    1 to :data:`MAX_CAPTION_CHARS` characters, a model of ``models``, a seed from 0 to
    :data:`MAX_SEED`, 1 to :data:`MAX_IMAGES` images and a boolean ``use_mean``."""
    if not isinstance(caption, str):
        raise DemoInputError("the caption must be text")
    caption = caption.strip()
    if not caption:
        raise DemoInputError(f"empty caption: type a sentence, e.g. {EXAMPLES[0]!r}")
    if len(caption) > MAX_CAPTION_CHARS:
        raise DemoInputError(
            f"the caption is too long: {len(caption)} characters, at most {MAX_CAPTION_CHARS}"
        )
    if not isinstance(model, str) or model not in models:
        raise DemoInputError(
            f"unknown model {str(model)[:80]!r}; choose one of: {', '.join(models)}"
        )
    seed = _whole_number(seed, "seed", 0, MAX_SEED)
    num_images = _whole_number(num_images, "number of images", 1, MAX_IMAGES)
    if not isinstance(use_mean, bool):
        raise DemoInputError("use_mean must be true or false")
    return Request(caption, model, seed, num_images, use_mean)


# --- the models and the callback


@dataclass(frozen=True)
class ModelEntry:
    path: Path
    sizes: tuple[int, ...]  # each stage's image side, smallest first


def _model_entry(path: Path) -> ModelEntry:
    """A model folder, checked without loading its weights."""
    from attngan.checkpoints import KIND_NAMES, read_model_info
    from attngan.config import from_dict

    meta = read_model_info(path)
    if meta["kind"] != "attngan":
        raise ModelError(f"{path} is {KIND_NAMES[meta['kind']]}, not {KIND_NAMES['attngan']}")
    try:
        sizes = from_dict(meta["config"]).model.image_sizes
    except (AttnGANError, KeyError, TypeError) as exc:
        raise ModelError(f"{path}: bad config ({exc})") from None
    return ModelEntry(path, tuple(sizes))


class Demo:
    """The page's models and its ``generate`` callback.

    Args:
        models: model folders by the name the page shows (see :func:`model_choices`); each is
            checked now (a ModelError for a missing or wrong folder) and loaded on first use.
        device: where the models run.
    """

    def __init__(self, models: Mapping[str, str | Path], device: Any = "cpu") -> None:
        if not models:
            raise ModelError("the demo needs at least one model")
        self.models = {name: _model_entry(Path(path)) for name, path in models.items()}
        self.device = device
        self.num_stages = max(len(entry.sizes) for entry in self.models.values())
        self._pipelines: dict[str, Pipeline] = {}
        self._lock = threading.Lock()

    def pipeline(self, name: str) -> Pipeline:
        """Model ``name``, loaded once (also when requests for it arrive together)."""
        with self._lock:
            if name not in self._pipelines:
                from attngan.pipeline import Pipeline

                path = self.models[name].path
                self._pipelines[name] = Pipeline.from_pretrained(path, device=self.device)
            return self._pipelines[name]

    def run(self, request: Request) -> GenerationOutput:
        """The images of a checked request; a DemoInputError for a caption the model cannot
        read (no word, or no word it knows)."""
        from attngan.text import tokenize

        pipe = self.pipeline(request.model)
        if not tokenize(request.caption):
            raise DemoInputError("the caption has no words: type a sentence")
        encoded = pipe.vocab.encode(request.caption, strict=False)
        if not encoded.ids:
            raise DemoInputError(
                f"no known word in the caption (unknown: {', '.join(encoded.unknown)}); "
                f"model {request.model!r} knows {len(pipe.vocab)} words"
            )
        return pipe(
            request.caption,
            num_images=request.num_images,
            seed=request.seed,
            use_mean=request.use_mean,
        )

    def generate(
        self, caption: str, model: str, seed: float, num_images: float, use_mean: bool
    ) -> tuple:
        """The page's callback: the images of each stage gallery (``(image, caption)`` pairs;
        none for stages the model lacks), the attention figures and the summary (Markdown). Bad
        input raises ``gr.Error`` with the reason."""
        gr = import_gradio()
        try:
            request = check_request(caption, model, seed, num_images, use_mean, list(self.models))
            output = self.run(request)
        except AttnGANError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        stages = [
            [(image, f"image {n + 1}") for n, image in enumerate(output.pil(k))]
            if k < len(output.images)
            else []
            for k in range(self.num_stages)
        ]
        figures = [
            (output.attention_figure(n), f"image {n + 1}: {' '.join(output.tokens[n])}")
            for n in range(len(output) if output.attention else 0)
        ]
        return (*stages, figures, summary(request, output))

    def gallery_labels(self, model: str) -> list[dict]:
        """Updates of the stage galleries for ``model``: each labelled with its image size,
        those past the model's stages hidden."""
        gr = import_gradio()
        sizes = self.models[model].sizes if model in self.models else ()
        return [
            gr.update(label=f"stage {k + 1}: {sizes[k]} px", visible=True)
            if k < len(sizes)
            else gr.update(value=[], visible=False)
            for k in range(self.num_stages)
        ]


def summary(request: Request, output: GenerationOutput) -> str:
    """The Markdown under the inputs: what was drawn, the words used, unknown and cut off."""

    def words(tokens: Sequence[str]) -> str:  # tokens are \w+ words: safe in code spans
        return " ".join(f"`{t}`" for t in tokens) if tokens else "none"

    sizes = "/".join(str(x.shape[-1]) for x in output.images)
    lines = [
        f"**{len(output)} image{'s' * (len(output) != 1)}**, {sizes} px, of model "
        f"`{request.model}`, seed {output.seed}{', use_mean' * request.use_mean}",
        f"- Words used: {words(output.tokens[0])}",
        f"- Unknown words (dropped): {words(output.unknown[0])}",
    ]
    if output.truncated[0]:
        limit = len(output.tokens[0])
        lines.append(f"- Cut off (the model reads {limit} words): {words(output.truncated[0])}")
    return "\n".join(lines)


# --- the page


def build_app(
    models: Mapping[str, str | Path],
    *,
    device: Any = "cpu",
    examples: Sequence[str] = EXAMPLES,
    concurrency: int = 1,
    queue_size: int = 16,
) -> gr.Blocks:
    """The demo page for ``models`` (name -> model folder; the first is the default), queued:
    ``concurrency`` requests run at once, at most ``queue_size`` wait. Launch it with ``css=CSS``
    for crisp small images and uncropped attention figures (:func:`launch` does)."""
    gr = import_gradio()
    demo = Demo(models, device)
    names = list(demo.models)
    first = demo.models[names[0]].sizes
    with gr.Blocks(title="attngan demo", analytics_enabled=False, delete_cache=(3600, 3600)) as app:
        gr.Markdown(
            "# attngan: text to image\nType a sentence, pick a model and press **Generate**: "
            "the images of every stage of the generator, and where it looked for each word."
        )
        with gr.Row():
            with gr.Column(scale=2, min_width=320):
                caption = gr.Textbox(
                    label=f"Caption (at most {MAX_CAPTION_CHARS} characters)",
                    placeholder=examples[0] if examples else None,
                    lines=2,
                    max_length=MAX_CAPTION_CHARS,
                    elem_id="caption",
                )
                if examples:
                    gr.Examples([[e] for e in examples], inputs=[caption], label="Examples")
                model = gr.Dropdown(names, value=names[0], label="Model", elem_id="model")
                with gr.Row():
                    seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=MAX_SEED)
                    count = gr.Slider(
                        1, MAX_IMAGES, value=4, step=1, label="Images", elem_id="num-images"
                    )
                use_mean = gr.Checkbox(
                    False, label="use_mean: condition on the mean (only the noise varies)"
                )
                button = gr.Button("Generate", variant="primary", elem_id="generate")
                info = gr.Markdown(label="summary", elem_id="summary")
            with gr.Column(scale=3):
                galleries = [
                    gr.Gallery(
                        label=f"stage {k + 1}: {first[k]} px" if k < len(first) else None,
                        visible=k < len(first),
                        columns=4,
                        height="fit-content",
                        format="png",
                        interactive=False,
                        elem_id=f"stage{k + 1}",
                        elem_classes="pixelated",
                    )
                    for k in range(demo.num_stages)
                ]
        attention = gr.Gallery(
            label="where each word looked: one figure per image (a row per refinement stage)",
            columns=1,
            height="fit-content",
            object_fit="contain",
            format="png",
            interactive=False,
            elem_id="attention",
            elem_classes="wide-figures",
        )
        gr.on(
            [button.click, caption.submit],
            demo.generate,
            inputs=[caption, model, seed, count, use_mean],
            outputs=[*galleries, attention, info],
            api_name="generate",
        )
        model.change(demo.gallery_labels, inputs=model, outputs=galleries, api_visibility="private")
    app.queue(default_concurrency_limit=concurrency, max_size=queue_size)
    return app


def launch(
    models: Mapping[str, str | Path],
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    device: Any = "cpu",
    prevent_thread_lock: bool = False,
    quiet: bool = False,
) -> gr.Blocks:
    """Serve :func:`build_app` on ``host:port`` (localhost by default) until Ctrl-C, or return at
    once with ``prevent_thread_lock`` (stop it with ``app.close()``). Offline: no share link, no
    analytics, no server-side rendering (which would need Node)."""
    app = build_app(models, device=device)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's requests to itself
    try:
        app.launch(
            server_name=host,
            server_port=port,
            share=False,
            ssr_mode=False,
            inbrowser=False,
            prevent_thread_lock=prevent_thread_lock,
            quiet=quiet,
            css=CSS,
        )
    except OSError as exc:
        reason = str(exc).split(". ")[0]  # Gradio's message goes on about its own parameters
        raise AttnGANError(f"cannot serve the demo on {host}:{port}: {reason}") from None
    return app

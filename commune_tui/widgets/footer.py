"""The key footer, redrawn only when the keys it shows change."""

from __future__ import annotations

from collections.abc import Iterator

from textual import widgets
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets._footer import FooterKey


class Footer(widgets.Footer):
    """Textual's footer, without its redundant work.

    Textual asks the footer to rebuild itself twice for every focus change, keys unchanged or
    not, and each new key restyles itself twice (its `compact` starts true, then follows the
    footer's): opening a thread spent more time there than in drawing the thread.
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._composed: tuple[object, ...] | None = None
        self._pending = False

    def _shown(self) -> tuple[object, ...]:
        """What the footer would show now: each key as drawn, and its layout switches."""
        app = self.app
        keys = tuple((binding.key, app.get_key_display(binding), binding.description, binding.action,
                      enabled, tooltip, binding.tooltip)
                     for key, (_, binding, enabled, tooltip) in self.screen.active_bindings.items()
                     if binding.show or key == app.COMMAND_PALETTE_BINDING)
        return keys, self.show_command_palette, self.compact

    def bindings_changed(self, screen: Screen) -> None:
        self._bindings_ready = True
        if self._pending or not screen.app.app_focus:
            return
        if self.is_attached and screen is self.screen:
            self._pending = True
            self.call_after_refresh(self._recompose_if_changed)

    async def _recompose_if_changed(self) -> None:
        self._pending = False
        if self.is_attached and self._shown() != self._composed:
            await self.recompose()

    def compose(self) -> ComposeResult:
        if self._bindings_ready:
            self._composed = self._shown()
        yield from self._settled(super().compose())

    def _settled(self, widgets: Iterator[Widget]) -> ComposeResult:
        """Each key bound to the footer's compact state already in it, so it is styled once."""
        for widget in widgets:  # keys inside a group pass here too, before the group is done
            if isinstance(widget, FooterKey) and "compact" in (widget._reactive_connect or {}):
                widget.set_reactive(FooterKey.compact, self.compact)
                widget.set_class(self.compact, "-compact", update=False)
            yield widget

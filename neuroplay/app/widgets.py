"""Menu rows and scripted key events: the small pieces of UI plumbing the screens share.

`Row` lists are what the start menu, the settings and the train screen are made of: Up/Down select,
Enter activates, Left/Right cycle a value, the mouse hovers and clicks. `KeyScript` turns a string
like `"0:down,2:return,10-40:left,60:escape"` into key events at given UI ticks, so `--headless` runs,
the README screenshot script and the tests drive the real event path without a keyboard.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pygame

from neuroplay.app import draw
from neuroplay.errors import UsageError


@dataclass
class Row:
    """One menu line: a label, an optional value cycled by Left/Right, an optional Enter action."""

    label: str
    value: Callable[[], str] | None = None
    cycle: Callable[[int], None] | None = None
    enter: Callable[[], None] | None = None

    def text(self) -> str:
        return f"{self.label}:  < {self.value()} >" if self.value else self.label


class RowsScreen:
    """A titled list of rows with keyboard and mouse navigation."""

    def __init__(self, title: str, rows: list[Row], footer: list[str] | None = None) -> None:
        self.title, self.rows, self.footer = title, rows, footer or []
        self.selected = 0
        self.rects: list[pygame.Rect] = []

    def handle(self, e: pygame.event.Event) -> bool:
        """Navigate/activate; returns True if the event was used."""
        if e.type == pygame.KEYDOWN:
            if e.key == pygame.K_UP:
                self.selected = (self.selected - 1) % len(self.rows)
            elif e.key == pygame.K_DOWN:
                self.selected = (self.selected + 1) % len(self.rows)
            elif e.key in (pygame.K_LEFT, pygame.K_RIGHT, pygame.K_a, pygame.K_d):
                row = self.rows[self.selected]
                if row.cycle:
                    row.cycle(-1 if e.key in (pygame.K_LEFT, pygame.K_a) else 1)
            elif e.key in (pygame.K_RETURN, pygame.K_KP_ENTER):
                row = self.rows[self.selected]
                if row.enter:
                    row.enter()
                elif row.cycle:
                    row.cycle(1)
            else:
                return False
            return True
        if e.type == pygame.MOUSEMOTION:
            for i, r in enumerate(self.rects):
                if r.collidepoint(e.pos):
                    self.selected = i
            return True
        if e.type == pygame.MOUSEBUTTONDOWN and e.button in (1, 3, 4, 5):
            for i, r in enumerate(self.rects):
                if r.collidepoint(e.pos):
                    self.selected = i
                    row = self.rows[i]
                    if e.button in (3, 4) and row.cycle:
                        row.cycle(-1)
                    elif e.button == 5 and row.cycle:
                        row.cycle(1)
                    elif row.enter:
                        row.enter()
                    elif row.cycle:
                        row.cycle(1)
                    return True
        return False

    def draw(self, surf: pygame.Surface, fonts: dict[str, pygame.font.Font], notice: str = "") -> None:
        footer = ([notice, ""] if notice else []) + self.footer
        self.rects = draw.draw_menu(surf, fonts, self.title, [r.text() for r in self.rows], self.selected, footer)


def cycle_index(options: list, current: object, delta: int) -> int:
    """Index of the option `delta` steps from `current` (wrapping; 0 when `current` is not listed)."""
    i = options.index(current) if current in options else (-1 if delta > 0 else 0)
    return (i + delta) % len(options)


ALIASES = {"esc": "escape", "enter": "return", "pagedown": "page down", "pageup": "page up",
           "page_down": "page down", "page_up": "page up", "pgdn": "page down", "pgup": "page up"}


class KeyScript:
    """Key events at UI ticks: `TICK:KEY` taps (down, up a tick later), `A-B:KEY` holds, `TICK:quit`."""

    def __init__(self, spec: str) -> None:
        self.at: dict[int, list[pygame.event.Event]] = {}
        for item in (s.strip() for s in spec.split(",")):
            if not item:
                continue
            when, sep, name = item.partition(":")
            if not sep:
                raise UsageError(f"--keys: {item!r} is not TICK:KEY or FROM-TO:KEY")
            a_s, _, b_s = when.partition("-")
            try:
                a, b = int(a_s), int(b_s or a_s)
            except ValueError as e:
                raise UsageError(f"--keys: {item!r}: ticks must be integers") from e
            name = name.strip().lower()
            if name == "quit":
                self._add(a, pygame.event.Event(pygame.QUIT))
                continue
            try:
                key = pygame.key.key_code(ALIASES.get(name, name.replace("_", " ")))
            except ValueError as e:
                raise UsageError(f"--keys: unknown key {name!r} (pygame key names: left, space, return, f1...)") from e
            self._add(a, pygame.event.Event(pygame.KEYDOWN, key=key, mod=0, unicode="", scancode=0))
            self._add(b + 1, pygame.event.Event(pygame.KEYUP, key=key, mod=0, unicode="", scancode=0))

    def _add(self, tick: int, e: pygame.event.Event) -> None:
        self.at.setdefault(tick, []).append(e)

    def events(self, tick: int) -> list[pygame.event.Event]:
        return self.at.pop(tick, [])

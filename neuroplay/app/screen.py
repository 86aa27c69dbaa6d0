"""The playing screen: frames side by side, heat map, HUD column, plot or scrub bar, overlays."""

from __future__ import annotations

import pygame

from neuroplay.app import draw
from neuroplay.session import View


def draw_play(surf: pygame.Surface, f: dict[str, pygame.font.Font], view: View, show_help: bool,
              help_lines: list[str], toast: str, video_on: bool, tick: int) -> pygame.Rect | None:
    """Draw one view; returns the scrub bar's rect (for the mouse) when there is one."""
    surf.fill(draw.BG)
    images = list(view.panels)
    if view.heat is not None:
        images.append(("difference", draw.heat_rgb(view.heat)))
    bottom = 120 if view.curves else 40 if view.scrub else 0
    scale = draw.layout_scale(surf.get_size(), len(images), bottom)
    x, top = 10, draw.TITLE_H + 6
    for title, img in images:
        draw.text(surf, f["s"], title, (x, 6), draw.DIM)
        surf.blit(draw.frame_surface(img, scale), (x, top))
        x += 64 * scale + 10
    frames_right = x
    if view.rec:
        draw.draw_rec(surf, f, (14, top + 4), tick / 15)
    if video_on:
        draw.text(surf, f["s"], "VIDEO", (frames_right - 60, 6), draw.RED)
    draw.draw_hud(surf, f, view.hud, frames_right + 4, 8)
    y = top + 84 * scale + 8
    scrub = None
    if view.curves:
        draw.draw_curves(surf, f, pygame.Rect(10, y, frames_right - 20, bottom - 10), view.curves)
    elif view.scrub is not None:
        scrub = pygame.Rect(10, y + 10, frames_right - 20, 12)
        draw.draw_scrub(surf, scrub, *view.scrub)
    msg = toast or view.message
    if msg:
        color = draw.RED if msg.startswith("NOT SAVED") or "could not" in msg else draw.ACCENT
        lines = draw._wrap(msg, max(20, (surf.get_width() - 20) // 9))
        for i, line in enumerate(lines[:3]):
            draw.text(surf, f["m"], line, (10, surf.get_height() - 26 * (len(lines[:3]) - i)), color)
    if show_help:
        draw.draw_overlay(surf, f, "Keys", help_lines)
    return scrub

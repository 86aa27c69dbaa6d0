"""Drawing: crisp scaled frames, HUD, heat map, accuracy/PSNR plot, scrub bar, menus, help overlay.

Frames are scaled with `pygame.transform.scale` (nearest neighbour) by an integer factor, so each of
the 84x64 pixels becomes a sharp square block, the way the model sees the game.
"""

from __future__ import annotations

import numpy as np
import pygame

BG = (18, 18, 24)
FG = (225, 225, 230)
DIM = (140, 140, 150)
ACCENT = (255, 200, 60)
RED = (230, 40, 40)
GREEN = (80, 220, 120)
BLUE = (90, 160, 255)
HUD_W = 250
"""Width of the HUD column right of the frames."""
TITLE_H = 22
"""Space above each frame for its title."""


def fonts() -> dict[str, pygame.font.Font]:
    return {"s": pygame.font.Font(None, 20), "m": pygame.font.Font(None, 26), "l": pygame.font.Font(None, 44)}


def text(surf: pygame.Surface, font: pygame.font.Font, s: str, pos: tuple[int, int],
         color: tuple[int, int, int] = FG) -> pygame.Rect:
    img = font.render(s, True, color)
    return surf.blit(img, pos)


def frame_surface(rgb: np.ndarray, scale: int) -> pygame.Surface:
    """(H, W, 3) uint8 -> a Surface scaled by an integer factor with nearest neighbour."""
    surf = pygame.surfarray.make_surface(np.ascontiguousarray(np.asarray(rgb).swapaxes(0, 1)))
    h, w = rgb.shape[:2]
    return pygame.transform.scale(surf, (w * scale, h * scale))


def heat_rgb(heat: np.ndarray) -> np.ndarray:
    """[0, 1] map -> black-red-yellow-white RGB (the `hot` colormap), boosted so small errors show."""
    x = np.clip(heat * 3.0, 0, 1)
    r = np.clip(x * 3, 0, 1)
    g = np.clip(x * 3 - 1, 0, 1)
    b = np.clip(x * 3 - 2, 0, 1)
    return (np.stack([r, g, b], -1) * 255).astype(np.uint8)


def layout_scale(window: tuple[int, int], n_panels: int, bottom: int) -> int:
    """Largest integer scale at which `n_panels` frames, the HUD and the bottom strip fit the window."""
    w, h = window
    s = min((w - HUD_W - 10 * (n_panels + 1)) // (64 * n_panels), (h - TITLE_H - bottom - 20) // 84)
    return max(1, int(s))


def window_size(scale: int, n_panels: int, bottom: int) -> tuple[int, int]:
    """Window size that fits the layout at `scale`."""
    return (64 * scale * n_panels + 10 * (n_panels + 1) + HUD_W, 84 * scale + TITLE_H + bottom + 20)


def draw_hud(surf: pygame.Surface, f: dict[str, pygame.font.Font], hud: dict[str, str], x: int, y: int) -> None:
    for k, v in hud.items():
        color = RED if k == "slow" else ACCENT if k in ("paused", "mode") else FG
        text(surf, f["s"], k, (x, y), DIM)
        y += 16
        for line in _wrap(v, 30):
            text(surf, f["m"], line, (x + 8, y), color)
            y += 22
        y += 4


def _wrap(s: str, n: int) -> list[str]:
    words, lines, cur = s.split(), [], ""
    for w in words:
        if len(cur) + len(w) + 1 > n and cur:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}".strip()
    return lines + [cur] if cur else lines or [""]


def draw_rec(surf: pygame.Surface, f: dict[str, pygame.font.Font], pos: tuple[int, int], t: float) -> None:
    if int(t * 2) % 2 == 0:
        pygame.draw.circle(surf, RED, (pos[0] + 10, pos[1] + 12), 9)
    text(surf, f["m"], "REC", (pos[0] + 24, pos[1] + 3), RED)


def draw_curves(surf: pygame.Surface, f: dict[str, pygame.font.Font], rect: pygame.Rect,
                curves: dict[str, list[float]]) -> None:
    """Running per-frame token accuracy (green, 0..1) and PSNR (blue, 0..50 dB); labels on their own strip
    above the plot, so the curves (accuracy sits near 1) never run through them."""
    pygame.draw.rect(surf, (30, 30, 40), rect)
    pygame.draw.rect(surf, DIM, rect, 1)
    plot = pygame.Rect(rect.x, rect.y + 22, rect.w, rect.h - 22)  # (label strip above)
    pygame.draw.line(surf, (45, 45, 58), (plot.x, plot.y), (plot.right - 1, plot.y))
    x = rect.x + 6
    for key, color, top, name, fmt in (("acc", GREEN, 1.0, "token accuracy (0..1)", "{:.3f}"),
                                       ("psnr", BLUE, 50.0, "PSNR (0..50 dB)", "{:.1f}")):
        ys = curves.get(key, [])
        label = name + (f": {fmt.format(ys[-1])}" if ys else "")
        text(surf, f["s"], label, (x, rect.y + 4), color)
        x += 260
        if len(ys) < 2:
            continue
        n = len(ys)
        pts = [(plot.x + int(i * (plot.w - 1) / max(n - 1, 1)),
                plot.bottom - 2 - int(np.clip(v / top, 0, 1) * (plot.h - 4))) for i, v in enumerate(ys)]
        pygame.draw.lines(surf, color, False, pts, 2)


def draw_scrub(surf: pygame.Surface, rect: pygame.Rect, cursor: int, n: int) -> None:
    pygame.draw.rect(surf, (40, 40, 52), rect, border_radius=4)
    if n > 1:
        x = rect.x + int(cursor / (n - 1) * (rect.w - 1))
        pygame.draw.rect(surf, (70, 90, 140), (rect.x, rect.y, x - rect.x, rect.h), border_radius=4)
        pygame.draw.rect(surf, ACCENT, (x - 3, rect.y - 4, 6, rect.h + 8))


def draw_menu(surf: pygame.Surface, f: dict[str, pygame.font.Font], title: str, rows: list[str],
              selected: int, footer: list[str]) -> list[pygame.Rect]:
    """Title, one row per item (the selected one highlighted); returns the rows' rects for the mouse."""
    surf.fill(BG)
    w = surf.get_width()
    text(surf, f["l"], title, (40, 30), ACCENT)
    rects = []
    y = 100
    for i, row in enumerate(rows):
        r = pygame.Rect(30, y - 6, w - 60, 34)
        if i == selected:
            pygame.draw.rect(surf, (50, 55, 80), r, border_radius=6)
        text(surf, f["m"], row, (44, y), ACCENT if i == selected else FG)
        rects.append(r)
        y += 40
    y += 10
    for line in footer:
        text(surf, f["s"], line, (40, y), DIM)
        y += 20
    return rects


def draw_overlay(surf: pygame.Surface, f: dict[str, pygame.font.Font], title: str, lines: list[str]) -> None:
    """A translucent panel with lines of text (the F1 help)."""
    shade = pygame.Surface(surf.get_size(), pygame.SRCALPHA)
    shade.fill((0, 0, 0, 200))
    surf.blit(shade, (0, 0))
    text(surf, f["l"], title, (30, 20), ACCENT)
    y = 70
    for line in lines:
        text(surf, f["m"], line, (40, y))
        y += 26


def draw_progress(surf: pygame.Surface, rect: pygame.Rect, fraction: float) -> None:
    pygame.draw.rect(surf, (40, 40, 52), rect, border_radius=4)
    pygame.draw.rect(surf, GREEN, (rect.x, rect.y, int(rect.w * min(max(fraction, 0.0), 1.0)), rect.h),
                     border_radius=4)


def loading(surf: pygame.Surface, f: dict[str, pygame.font.Font], mode: str, seconds: float) -> None:
    """The screen while a session is built off the UI thread."""
    surf.fill(BG)
    text(surf, f["l"], f"Starting {mode}...", (40, 30), ACCENT)
    text(surf, f["m"], f"loading the model and the emulator ({seconds:.0f} s)", (40, 100))
    text(surf, f["s"], "Esc: back to the menu", (40, 140), DIM)

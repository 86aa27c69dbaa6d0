"""The pygame front end: the only place in neuroplay that imports pygame.

`main.App` is the window (menu, play screen, settings, train launcher); the game logic it drives is
`neuroplay.session.Session`. Importing this package alone does not import pygame (`catalog`, `runner`
and `video` are pygame-free); `main`, `draw`, `screen`, `widgets` and `train_screen` do.
"""

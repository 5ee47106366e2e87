"""The video generator's architecture choices, in a module that imports nothing: the model
(plain torch, which may import nothing of the app) and the light config module (which listing
generators reads without torch) both take them from here."""

MOTIONS = ("stylegan-v", "mocogan")
TEMPORAL_DS = ("pairs", "trunk", "3d")

"""Video generator: short clips with coherent motion, through the same plugin contract as text
and image (issue 12).

A content latent held for the whole clip plus a motion signal over continuous time give one
latent per frame; the image generator's DCGAN-class network renders each frame. Training is
sparse: a few frames per clip at sorted random times, judged by the image discriminator one
frame at a time and by a temporal discriminator that sees the frames together with their time
gaps. Work in progress: the adapter lands in the next commits.
"""

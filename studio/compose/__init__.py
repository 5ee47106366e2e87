"""Composition: generated text, pictures and clips laid out as ads (issue 17).

fonts        which font file has the glyphs of a text (shipped fonts in assets/fonts/ first)
text_layout  wrap, shrink and ellipsise text to fit a box, and draw it on an image
"""

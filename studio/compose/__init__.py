"""Composition: generated text, pictures and clips laid out as ads (issue 17).

fonts        which font file has the glyphs of a text (shipped fonts in assets/fonts/ first)
text_layout  wrap, shrink and ellipsise text to fit a box, and draw it on an image
template     a layout as JSON data (canvas, fonts, colours, regions); built-ins in templates/
recipe       a recipe (a template and, per slot, a run, prompt, settings and guards), rows
             from CSV or JSONL filling its {placeholders}, seeds per row and slot, the guards
runner       a recipe's runs loaded once; an ad's content per row (text retried by the guards)
render       the poster (PNG), the clip (MP4/GIF) and ad.json, the lineage, written atomically
batch        one ad per row (`studio compose`), resumable, review.json and an index.html sheet
"""

"""Encoders: one module per modality, one interface for all of them.

Every encoder is an ``nn.Module`` with

* ``encoder(x, lengths=None) -> (B, D)``: pooled features, one vector per sample;
* ``encoder.sequence(x, lengths=None) -> (features (B, T, D), mask (B, T) bool)``: the
  sequence view (image patches, audio frames, text tokens) that attention fusion reads; ``mask``
  is True at real positions and False at padding (all True for images);
* ``encoder.out_dim``: D, the same for both views.

``x`` is what the course's collate function puts in a batch for that modality: images
(B, 3, H, W) float in [0, 1]; padded waveforms (B, L) float with ``lengths`` (B,) in samples;
padded token ids (B, T) int64 with ``lengths`` (B,) in tokens. Bad input (a wrong channel count,
a wrong dtype, an empty text, a wrong sample rate) raises a ValueError saying what was expected
and what was given.

Modules: ``image`` (CNN, torchvision ResNet backbone), ``audio`` (log-mel front end, CNN, GRU),
``text`` (bag of words, embedding bag, transformer encoder; re-exports the tokenizer and MiniLM),
``tokenizer`` (WordPiece tokenizer, text collate, token-id checks), ``minilm`` (the pretrained
sentence encoder), ``masks`` (padding masks and the masked mean every sequence encoder uses),
``default`` (``make_encoder``: the course's default encoder of each modality).
"""

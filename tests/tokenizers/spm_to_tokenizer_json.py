"""spm_to_tokenizer_json.py MODEL > tokenizer.json

Writes the Hugging Face tokenizer.json of a SentencePiece Unigram .model, the
way transformers' SpmConverter does (model Unigram with [piece, score] pairs
and unk_id; normalizer Precompiled with the model's charsmap, then Replace of
" {2,}" by " "; Metaspace pre-tokenizer and decoder; <s> </s> as special added
tokens). The protobuf is read by hand (fields as in sentencepiece_model.proto),
so neither sentencepiece nor transformers is needed."""
import base64, json, struct, sys


def fields(buf):
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        f, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(buf, i)
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        elif wt == 2:
            n, i = varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ValueError("bad wire type")
        yield f, wt, v


def varint(buf, i):
    v = s = 0
    while True:
        c = buf[i]
        i += 1
        v |= (c & 0x7F) << s
        s += 7
        if not c & 0x80:
            return v, i


pieces, charsmap, dummy, byte_fallback = [], b"", True, False
for f, wt, v in fields(open(sys.argv[1], "rb").read()):
    if f == 1:
        p = {"type": 1, "score": 0.0}
        for g, _, w in fields(v):
            if g == 1: p["piece"] = w.decode()
            if g == 2: p["score"] = struct.unpack("<f", w)[0]
            if g == 3: p["type"] = w
        pieces.append(p)
    elif f == 2:
        for g, _, w in fields(v):
            if g == 35: byte_fallback = bool(w)
    elif f == 3:
        for g, _, w in fields(v):
            if g == 2: charsmap = w
            if g == 3: dummy = bool(w)

unk = next(i for i, p in enumerate(pieces) if p["type"] == 2)
norms = [{"type": "Replace", "pattern": {"String": " {2,}"}, "content": " "}]
if charsmap:
    norms.insert(0, {"type": "Precompiled", "precompiled_charsmap": base64.b64encode(charsmap).decode()})
tok = {
    "version": "1.0",
    "truncation": None,
    "padding": None,
    "added_tokens": [{"id": i, "content": p["piece"], "single_word": False, "lstrip": False, "rstrip": False,
                      "normalized": False, "special": True} for i, p in enumerate(pieces) if p["type"] in (2, 3)],
    "normalizer": {"type": "Sequence", "normalizers": norms},
    "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": dummy},
    "post_processor": None,
    "decoder": {"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": dummy},
    "model": {"type": "Unigram", "unk_id": unk, "vocab": [[p["piece"], p["score"]] for p in pieces],
              "byte_fallback": byte_fallback},
}
json.dump(tok, sys.stdout, ensure_ascii=False, indent=1)

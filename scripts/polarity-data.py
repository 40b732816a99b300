#!/usr/bin/python3
"""Turns the Pang & Lee movie-review data shipped in Debian's python3-pattern
test corpora into the files the fine-tuning demo reads (nothing is committed):

  OUT/train.tsv, OUT/dev.tsv, OUT/test.tsv
                               label<TAB>sentence, 0 = negative, 1 = positive:
                               the 4,000 sentences of the sentence polarity set,
                               shuffled with a fixed seed: 800 for the test,
                               400 to pick the best epoch, 2,800 to train on;
  OUT/lm/reviews-NNNN.txt      unlabelled in-domain text for pretraining: the
                               1,500 full reviews of the *other* Pang & Lee set
                               (polarity v2.0, IMDb reviews), labels dropped;
  OUT/lm/train-sentences.txt   the training and dev sentences, labels dropped.
The test sentences never enter pretraining, nor pick anything.

Note: pattern's README swaps the two file names; the sentences are in
polarity-en-pang&lee2.csv and the reviews in polarity-en-pang&lee1.csv. The
corpora are "meant for personal use", not part of pattern's BSD license,
which is why they are fetched at run time and never committed."""
import csv, os, random, sys

src = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/doc/python3-pattern/test/corpora"
out = sys.argv[2] if len(sys.argv) > 2 else "runs/polarity"
n_test, n_dev, seed = 800, 400, 1234

def clean(s):
    return " ".join(s.replace("\t", " ").split())

rows = [(1 if r[0] == "1" else 0, clean(r[1])) for r in
        csv.reader(open(os.path.join(src, "polarity-en-pang&lee2.csv"), encoding="utf-8-sig"))]
assert len(rows) == 4000, len(rows)
random.Random(seed).shuffle(rows)
test, dev, train = rows[:n_test], rows[n_test:n_test + n_dev], rows[n_test + n_dev:]
os.makedirs(os.path.join(out, "lm"), exist_ok=True)
for name, part in (("train", train), ("dev", dev), ("test", test)):
    with open(os.path.join(out, name + ".tsv"), "w", encoding="utf-8") as f:
        for y, s in part:
            f.write(f"{y}\t{s}\n")
with open(os.path.join(out, "lm", "train-sentences.txt"), "w", encoding="utf-8") as f:
    for _, s in dev + train:
        f.write(s + "\n")
reviews = list(csv.reader(open(os.path.join(src, "polarity-en-pang&lee1.csv"), encoding="utf-8-sig")))
for i, r in enumerate(reviews):
    with open(os.path.join(out, "lm", "reviews-%04d.txt" % i), "w", encoding="utf-8") as f:
        f.write(r[1].strip() + "\n")
print(f"{out}: train {len(train)} dev {len(dev)} test {len(test)} sentences, {len(reviews)} reviews for pretraining")

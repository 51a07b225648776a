"""Generate a labelled PII set from the presidio-evaluator templates that the large development set
(``presidio_generated_large.json``) never uses, so the redactor can be measured on sentence shapes it
was never tuned on.

The templates and Faker lists stay in presidio-evaluator: nothing of them enters sluice or its
repository. presidio-evaluator pins libraries sluice does not use, so run this in its own venv:

    python3 -m venv /tmp/pe && /tmp/pe/bin/pip install presidio-evaluator==0.3.2
    /tmp/pe/bin/python tools/pii_fresh_set.py LARGE.json 1500 7 tune fresh_tune.json
    /tmp/pe/bin/python tools/pii_fresh_set.py LARGE.json 1500 11 report fresh_report.json
    /tmp/pe/bin/python tools/pii_fresh_set.py LARGE.json 1500 5 folds refold_tune.json en_GB 0.2

The unused templates are dealt in two halves by position: ``tune`` (even) to look for causes,
``report`` (odd) to report on. ``folds`` takes the large set's own tuning templates instead
(every template outside the held-out fold 0 of ``--split-by-template 3``) and fills them with new
values, in another Faker locale and lower-cased more often if asked: shapes already tuned on, people
and places never seen, to find what the rules overfit to without looking at the held-out fold.

Labels are re-read from the text, since the generator keeps a name's case in its label when it
lower-cases the sentence; escaped line breaks in the templates become real ones, as they are in the
large set.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys

from presidio_evaluator.data_generator import PresidioSentenceFaker
from presidio_evaluator.data_generator.presidio_sentence_faker import presidio_templates_file_path


def _fold(template_id: int, k: int = 3) -> int:
    """The fold ``sluice eval pii --split-by-template k`` deals a template into (pipelines/pii_eval.py)."""
    return int(hashlib.sha256(str(template_id).encode()).hexdigest(), 16) % k


def main(large_path: str, count: str, seed: str, part: str, out_path: str, locale: str = "en_US",
         lower_case_ratio: str = "0.05") -> None:
    with open(large_path, encoding="utf-8") as f:
        used = {x["template_id"] for x in json.load(f)}
    with open(presidio_templates_file_path, encoding="utf-8") as f:
        lines = [line.strip().replace("\\n", "\n") for line in f if line.strip()]
    if part == "folds":
        half = [(i, t) for i, t in enumerate(lines) if i in used and _fold(i) != 0]
        print(f"{len(half)} of the large set's templates outside its held-out fold", file=sys.stderr)
    else:
        unused = [(i, t) for i, t in enumerate(lines) if i not in used]
        half = [x for k, x in enumerate(unused) if k % 2 == (0 if part == "tune" else 1)]
        print(f"{len(unused)} templates unused by the large set; {len(half)} in the {part} half", file=sys.stderr)
    random.seed(int(seed))
    faker = PresidioSentenceFaker(locale, lower_case_ratio=float(lower_case_ratio),
                                  sentence_templates=[t for _, t in half], random_seed=int(seed))
    out = []
    for s in faker.generate_new_fake_sentences(int(count)):
        text = s.full_text.replace("}} ", ">  ")  # the generator garbles "> " quote markers; same length
        out.append({"full_text": text, "template_id": half[s.template_id][0], "spans": [
            {"entity_type": p.entity_type, "entity_value": text[p.start_position:p.end_position],
             "start_position": p.start_position, "end_position": p.end_position} for p in s.spans]})
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=0)


if __name__ == "__main__":
    main(*sys.argv[1:8])

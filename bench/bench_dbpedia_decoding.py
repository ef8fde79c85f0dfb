"""
Decoding a test split with a trained checkpoint, in bfloat16 and in float32: milliseconds per row, path accuracy, and
how often the two dtypes decode the same path.

    python bench/bench_dbpedia_decoding.py --model_name_or_path outputs/gemma-3-270m-dbpedia-hdlm

Each dtype loads the checkpoint afresh (`AutoModel.from_pretrained(..., dtype=...)`), decodes a warm-up batch, then
the whole split with `generate_hierarchical` (constrained greedy, early exit). Beside it, the floor any decoder pays:
one full-depth forward over the same prompts in the same batches (the prefill), timed on its own.
"""

import argparse
import json
import time

import torch
from transformers import AutoModel, AutoTokenizer


def read_rows(path: str, limit: int | None) -> list[dict]:
    with open(path, encoding="utf-8") as file:
        rows = [json.loads(line) for line in file if line.strip()]
    return rows[:limit] if limit else rows


@torch.no_grad()
def prefill_seconds(model, tokenizer, texts: list[str], batch_size: int) -> float:
    """One full-depth forward over every prompt, batched as `generate_hierarchical` batches them."""
    renderer = model.get_renderer(tokenizer)
    prompts = sorted((renderer.prompt_ids(text) + renderer.header_ids(0) for text in texts), key=len)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    start = time.perf_counter()
    for index in range(0, len(prompts), batch_size):
        batch = prompts[index : index + batch_size]
        length = max(len(ids) for ids in batch)
        ids = torch.tensor([[pad] * (length - len(row)) + row for row in batch])
        mask = torch.tensor([[0] * (length - len(row)) + [1] * len(row) for row in batch])
        model.model.base_model(input_ids=ids, attention_mask=mask, use_cache=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_name_or_path", required=True)
    parser.add_argument("--test_file", default="data/dbpedia/test.jsonl")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--max_samples", type=int, default=None)
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = read_rows(args.test_file, args.max_samples)
    texts, references = [row["text"] for row in rows], [row["labels"] for row in rows]
    tokenizer = AutoTokenizer.from_pretrained(args.model_name_or_path, trust_remote_code=True)
    paths = {}
    print(f"{len(rows)} rows of {args.test_file}, batch {args.batch_size}, {args.threads} threads\n")
    print("| dtype | decoding ms/row | prefill alone ms/row | path accuracy |")
    print("|---|---:|---:|---:|")
    for name in args.dtypes:
        model = AutoModel.from_pretrained(args.model_name_or_path, trust_remote_code=True, dtype=getattr(torch, name))
        model.eval()
        model.generate_hierarchical(texts[: args.batch_size], tokenizer, batch_size=args.batch_size)  # warm-up
        start = time.perf_counter()
        outputs = model.generate_hierarchical(texts, tokenizer, batch_size=args.batch_size)
        seconds = time.perf_counter() - start
        prefill = prefill_seconds(model, tokenizer, texts, args.batch_size)
        paths[name] = [output.path for output in outputs]
        accuracy = sum(path == reference for path, reference in zip(paths[name], references)) / len(rows)
        print(
            f"| {name} | {1000 * seconds / len(rows):.1f} | {1000 * prefill / len(rows):.1f} | {100 * accuracy:.1f} |"
        )
    if len(paths) == 2:
        first, second = paths.values()
        same = sum(a == b for a, b in zip(first, second)) / len(rows)
        print(f"\n{' and '.join(paths)} decode the same path on {100 * same:.1f} % of the rows")


if __name__ == "__main__":
    main()

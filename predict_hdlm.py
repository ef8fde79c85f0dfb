"""
Classify unlabeled rows with an HdLM checkpoint: one output row per input row, in input order, with the path and every
level's label and probability.

```bash
python predict_hdlm.py \
    --model_name_or_path outputs/gemma-3-270m-dbpedia-hdlm \
    --input_file documents.jsonl \
    --output_file predictions.jsonl
```

The input is JSONL / JSON / CSV / TSV / Parquet (the text field, and the id field where present; labels are
ignored); the output JSONL or Parquet, by extension (columns in `hdlm/inference/predict.py`). Rows are decoded in
chunks of `--chunk_size`, each written atomically into `<output_file>.partial/` as soon as it is done: after an
interruption, `--resume` decodes only the chunks that are missing. `accelerate launch --num_processes N
predict_hdlm.py ...` (or `torchrun --nproc_per_node N`) shares the chunks out among N processes, and the first one
assembles the one ordered output file.
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import PartialState
from accelerate.utils import parse_flag_from_env
from transformers import AutoModel, AutoTokenizer
from trl import TrlParser

from hdlm.checkpoints import check_hdlm_checkpoint
from hdlm.hardware import decoding_dtype
from hdlm.inference.arguments import DecodingArguments
from hdlm.inference.chunks import ChunkStore
from hdlm.inference.predict import check_level_names, check_output_file, file_digest, output_writer, predict_chunks
from hdlm.inference.reading import read_texts


@dataclass
class PredictArguments(DecodingArguments):
    """What to classify with which checkpoint, where the predictions go, and how to decode (`DecodingArguments`)."""

    model_name_or_path: str | None = field(default=None, metadata={"help": "The HdLM checkpoint (folder or hub id)."})
    input_file: str | None = field(default=None, metadata={"help": "Rows to classify (JSONL/JSON/CSV/TSV/Parquet)."})
    output_file: str | None = field(default=None, metadata={"help": "Where predictions go (.jsonl or .parquet)."})
    text_field: str = field(default="text", metadata={"help": "Field holding the text to classify."})
    id_field: str = field(default="id", metadata={"help": "Field holding the row's id (else: the 0-based row index)."})
    chunk_size: int = field(
        default=1024, metadata={"help": "Rows decoded (sorted by length into batches) and written together."}
    )
    resume: bool = field(default=False, metadata={"help": "Continue an interrupted run into the same output file."})
    dtype: str = field(
        default="auto",
        metadata={
            "help": "Weights' dtype while decoding: `auto` is bfloat16 where the device has bf16 matrix units (a GPU "
            "with bf16, a CPU with AVX-512 BF16 or AMX) and float32 elsewhere; or `float32`, `bfloat16`, `checkpoint` "
            "(as saved), or `bf16_autocast` (float32 weights, matmuls in bf16 autocast)."
        },
    )

    def __post_init__(self) -> None:
        for name in ("model_name_or_path", "input_file", "output_file"):
            if getattr(self, name) is None:
                raise ValueError(f"Pass `--{name}`.")
        if self.chunk_size < 1:
            raise ValueError(f"`--chunk_size` must be >= 1, got {self.chunk_size}.")
        check_output_file(self.output_file)

    def run_record(self, input_digest: str) -> dict:
        """What identifies a run across an interruption: every option but where it writes, and the inputs' identity."""
        record = dataclasses.asdict(self)
        del record["resume"], record["output_file"]
        model = Path(self.model_name_or_path)
        if model.is_dir():
            record["model_name_or_path"] = str(model.resolve())
            record["model_files"] = sorted(
                (item.name, item.stat().st_size, item.stat().st_mtime_ns) for item in model.iterdir() if item.is_file()
            )
        record.update(input_file=str(Path(self.input_file).resolve()), input_sha256=input_digest)
        record["weights_dtype"] = str(self.dtypes()[0])
        return record

    def dtypes(self) -> tuple[torch.dtype | str, torch.dtype | None]:
        """The weights' dtype, and the autocast dtype (None: no autocast)."""
        if self.dtype == "bf16_autocast":
            return torch.float32, torch.bfloat16
        return decoding_dtype(self.dtype), None


def main(args: PredictArguments) -> None:
    # Processes started by `accelerate launch` / `torchrun` on CPUs share the work over gloo.
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.accelerator.is_available())
    texts, ids = read_texts(args.input_file, args.text_field, args.id_field)
    check_hdlm_checkpoint(args.model_name_or_path)
    store = ChunkStore(args.output_file, args.run_record(file_digest(args.input_file)))
    store.check(args.resume)  # every process, before the first one writes anything
    state.wait_for_everyone()
    if state.is_main_process:
        store.start()
    state.wait_for_everyone()

    weights_dtype, autocast_dtype = args.dtypes()
    model = AutoModel.from_pretrained(
        args.model_name_or_path, trust_remote_code=args.trust_remote_code, dtype=weights_dtype
    )
    model = model.to(state.device).eval()
    check_level_names(model.config.level_names)
    tokenizer = AutoTokenizer.from_pretrained(args.model_name_or_path, trust_remote_code=args.trust_remote_code)
    num_chunks = predict_chunks(
        model,
        tokenizer,
        texts,
        ids,
        store,
        args.generation_config(state.device),
        chunk_size=args.chunk_size,
        seed=args.seed,
        process_index=state.process_index,
        num_processes=state.num_processes,
        autocast_dtype=autocast_dtype,
        show_progress=state.is_main_process,
    )
    state.wait_for_everyone()
    if state.is_main_process:
        writer = output_writer(args.output_file, model.config.level_names, ids, top_paths=args.top_k_paths > 1)
        store.assemble(num_chunks, writer)
        print(f"{len(texts)} predictions in {args.output_file}")


if __name__ == "__main__":
    main(*TrlParser((PredictArguments,)).parse_args_and_config())

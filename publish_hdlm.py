"""
Publish a trained HdLM to the Hugging Face Hub: the checkpoint, its remote code, the model card and the evaluation
results (metrics, plots, predictions) in one commit. Trainer files (training_args.bin, checkpoint-* folders, optimizer
states) are never uploaded.

```bash
hf auth login  # or export HF_TOKEN=...
python publish_hdlm.py \
    --output_dir outputs/gemma-3-270m-dbpedia-hdlm \
    --hub_model_id your-name/gemma-3-270m-dbpedia-hdlm
```

`python train_hdlm.py ... --push_to_hub --hub_model_id your-name/my-hdlm` does the same at the end of training.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path

from trl import TrlParser

from hdlm.publishing import publish

logger = logging.getLogger(__name__)


@dataclass
class PublishArguments:
    """What to publish, and where."""

    output_dir: str = field(metadata={"help": "The directory train_hdlm.py wrote (checkpoint, card, eval/)."})
    hub_model_id: str | None = field(
        default=None,
        metadata={"help": "Repository id, `namespace/name` or `name` (your namespace). Default: output_dir's name."},
    )
    private: bool = field(default=False, metadata={"help": "Create the repository private (if it does not exist)."})
    revision: str | None = field(default=None, metadata={"help": "Branch to commit to (created if needed); main."})
    token: str | None = field(default=None, metadata={"help": "Hub token with write access. Default: HF_TOKEN."})
    commit_message: str | None = field(default=None, metadata={"help": "Message of the commit."})


def main(args: PublishArguments) -> str:
    url = publish(
        args.output_dir,
        args.hub_model_id or Path(args.output_dir).resolve().name,
        private=args.private,
        revision=args.revision,
        token=args.token,
        commit_message=args.commit_message,
    )
    logger.info(f"Published {args.output_dir}: {url}")
    return url


def make_parser() -> TrlParser:
    return TrlParser((PublishArguments,))


if __name__ == "__main__":
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    main(*make_parser().parse_args_and_config())

"""``simtune chat MODEL``: talk to a model in the terminal, keeping the conversation.

Each line read is a user turn; the reply is generated from the whole conversation so
far (through the chat template). ``/reset`` starts over, ``/exit`` (or end of input,
Ctrl-D) ends. MODEL is anything :func:`simtune.export.load_trained` accepts: a model
folder, ``checkpoint-N``, ``final_model``, a LoRA adapter folder, a .gguf file or 'default'.
"""
from __future__ import annotations

import sys
from typing import TextIO

from simtune.generation import generate

HELP = "commands: /reset (start over), /exit (quit); end of input also quits"


def chat_loop(model, tok, *, system: str | None = None, max_new_tokens: int = 256, do_sample: bool = False,
              temperature: float = 1.0, stdin: TextIO | None = None, stdout: TextIO | None = None,
              prompt: str | None = None) -> list[dict]:
    """Run the loop until /exit or end of input; returns the conversation at the end."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    if prompt is None:
        prompt = "you> " if stdin.isatty() else ""
    history: list[dict] = []

    def say(text: str) -> None:
        stdout.write(text + "\n")
        stdout.flush()

    while True:
        if prompt:
            stdout.write(prompt)
            stdout.flush()
        line = stdin.readline()
        if not line:  # EOF
            break
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            break
        if text == "/reset":
            history = []
            say("(conversation reset)")
            continue
        if text in ("/help", "/?"):
            say(HELP)
            continue
        history.append({"role": "user", "content": text})
        msgs = ([{"role": "system", "content": system}] if system else []) + history
        reply = generate(model, tok, [msgs], max_new_tokens=max_new_tokens, batch_size=1, do_sample=do_sample,
                         temperature=temperature)[0]
        history.append({"role": "assistant", "content": reply})
        say(reply)
    return history


def cli_chat(argv: list[str]) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="simtune chat", description="chat with a model in the terminal. " + HELP)
    ap.add_argument("model", nargs="?", default="default",
                    help="model folder, checkpoint, final_model, LoRA adapter folder, .gguf or 'default'")
    ap.add_argument("--system", default=None, help="system prompt")
    ap.add_argument("--max_new_tokens", "--max-new-tokens", type=int, default=256)
    ap.add_argument("--temperature", type=float, default=None, help="sample at this temperature (default: greedy)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--chat_template", default=None, help="fallback chat template name")
    a = ap.parse_args(argv)
    from simtune.export import load_trained
    model, tok = load_trained(a.model, device=a.device, chat_template=a.chat_template)
    if sys.stdin.isatty():
        print(f"simtune chat: {a.model}. {HELP}")
    chat_loop(model, tok, system=a.system, max_new_tokens=a.max_new_tokens,
              do_sample=a.temperature is not None, temperature=a.temperature or 1.0)
    return 0

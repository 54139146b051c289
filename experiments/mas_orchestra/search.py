"""WebSearchAgent over a local corpus: BM25 retrieval inside the authors' tool-calling research loop.

The authors' offline agent (``blocks_harmony/web_search_offline.py``, after open_deep_research) gives the model two
tools, ``web_search(search_query)`` (top 5 documents of a BM25 or dense index over a fixed corpus, numbered as
sources) and ``think_tool(reflection)``, and loops: up to 5 model turns, at most 5 tool calls a turn; a turn without
tool calls is the answer, and after the last turn the model answers once more without being stopped.  The question
the agent researches is its whole composed input (original task + sub-task).

``mode="single"`` is for models that cannot call tools (a small local engine): one BM25 query with the agent's
sub-task (or the question), the passages prepended, one answer — not the authors' agent, named so in reports.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from jaxlab.llm.types import LLMError, ToolCall

if TYPE_CHECKING:
    from experiments.mas_orchestra.subagents import Runtime

# A condensed form of the authors' ``research_system_prompt`` (their text also dates the request and budgets
# 2-3 searches for simple questions, up to 5 for complex ones).
RESEARCH_SYSTEM = """You are a research assistant conducting research on the user's input topic.

<Task>
Use the tools to gather information about the topic. You can call them in series or in parallel; your research is a \
tool-calling loop.
</Task>

<Available Tools>
1. web_search: conduct searches to gather information
2. think_tool: reflect on the results and plan the next step (not together with other tools)
</Available Tools>

<Hard Limits>
Simple queries: 2-3 searches at most; complex queries: up to 5. Stop as soon as you can answer confidently.
</Hard Limits>

When you are done, answer without calling a tool: a comprehensive answer with sources; put the final answer in \
\\boxed{}."""

TOOLS = (
    {
        "type": "function",
        "function": {
            "name": "web_search",
            "description": "A search engine optimized for comprehensive, accurate, and trusted "
            "results. Useful for when you need to answer questions about current events.",
            "parameters": {
                "type": "object",
                "required": ["search_query"],
                "properties": {"search_query": {"type": "string"}},
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "think_tool",
            "description": "Strategic reflection tool for research planning",
            "parameters": {
                "type": "object",
                "required": ["reflection"],
                "properties": {"reflection": {"type": "string"}},
            },
        },
    },
)
MAX_CHARS = 10_000  # the authors' per-document character limit


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


class Corpus:
    """A local document collection searched with BM25 (``rank_bm25.BM25Okapi``)."""

    def __init__(self, documents: Sequence[str], titles: Sequence[str] | None = None) -> None:
        keep = [i for i, d in enumerate(documents) if d.strip()]
        self.documents = [documents[i] for i in keep]
        self.titles = [titles[i] if titles else f"doc {i}" for i in keep]
        self._bm25 = None
        if self.documents:
            from rank_bm25 import BM25Okapi

            self._bm25 = BM25Okapi([_tokens(d) or ["_"] for d in self.documents])

    @classmethod
    def from_path(cls, path: str | Path) -> "Corpus":
        """A ``.jsonl`` (field ``contents`` or ``text``, optional ``title``/``docid``, as pyserini / BrowseComp-Plus
        corpora) or a folder of ``.md`` / ``.txt`` files (titled by file name)."""
        path = Path(path)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix in (".md", ".txt"))
            if not files:
                raise ValueError(f"corpus {str(path)!r}: no .md or .txt files")
            return cls([p.read_text(errors="replace") for p in files], [p.stem for p in files])
        if path.suffix == ".jsonl" and path.is_file():
            docs, titles = [], []
            for i, line in enumerate(path.read_text().splitlines()):
                if line.strip():
                    row = json.loads(line)
                    text = row.get("contents", row.get("text"))
                    if not isinstance(text, str):
                        raise ValueError(f"{path} line {i + 1}: expected a 'contents' or 'text' string field")
                    docs.append(text)
                    titles.append(str(row.get("title", row.get("docid", f"line {i + 1}"))))
            return cls(docs, titles)
        raise ValueError(f"corpus: expected a .jsonl file or a folder of .md/.txt files, got {str(path)!r}")

    def ranked(self, query: str, k: int) -> list[int]:
        """Indices of the ``k`` best documents by BM25 (documents sharing no term with the query never count)."""
        if self._bm25 is None:
            return []
        q = _tokens(query)
        scores = self._bm25.get_scores(q)
        vocab = set(q)
        order = sorted(range(len(self.documents)), key=lambda i: -scores[i])
        return [i for i in order if vocab & set(_tokens(self.documents[i]))][:k]

    def search(self, query: str, k: int) -> list[str]:
        return [self.documents[i] for i in self.ranked(query, k)]


def format_results(corpus: Corpus, query: str, k: int) -> str:
    """The authors' ``web_search`` tool output: numbered sources, each document cut at ``MAX_CHARS``."""
    hits = corpus.ranked(query, k)
    if not hits:
        return "No valid search results found. Please try a different search query."
    return "Search results:\n\n" + "".join(
        f"\n\n--- SOURCE {n}: {corpus.titles[i]} ---\n\nCONTENT:\n{corpus.documents[i][:MAX_CHARS]}\n\n\n\n"
        + "-" * 80
        + "\n"
        for n, i in enumerate(hits, 1)
    )


def research(rt: "Runtime", agent: str, task: str) -> str:
    """The authors' loop: model turns with the two tools until one answers, or the iteration budget runs out."""
    s = rt.settings
    messages: list[dict] = [
        {"role": "system", "content": RESEARCH_SYSTEM},
        {
            "role": "user",
            "content": f"Research Question: {task}\n\nPlease conduct searches and "
            "provide a comprehensive answer with sources.",
        },
    ]
    for it in range(s.search_iterations + 1):
        resp = rt.chat(messages, (agent, "research", it), TOOLS)
        calls = resp.tool_calls[: s.search_tool_calls]
        if not calls or it == s.search_iterations:  # an answer, or the authors' final turn after the budget
            return resp.text
        messages.append(
            {"role": "assistant", "content": resp.text or None, "tool_calls": [c.to_openai() for c in calls]}
        )
        for k, c in enumerate(calls):
            messages.append({"role": "tool", "tool_call_id": c.id or f"call_{it}_{k}", "content": _run_tool(rt, c)})
    raise AssertionError("unreachable: the loop returns on its last turn")


def _run_tool(rt: "Runtime", call: ToolCall) -> str:
    """A tool's reply; a bad call is told to the model (as the authors' loop does), never raised."""
    if call.name not in ("web_search", "think_tool"):
        return f"Unknown tool: {call.name}"
    try:
        args = call.parsed_arguments()
    except LLMError as exc:
        return f"Invalid arguments: {exc}"
    if call.name == "web_search":
        return format_results(rt.corpus, str(args.get("search_query", "")), rt.settings.search_top_k)
    return f"Reflection recorded: {args.get('reflection', '')}"


def single_query(rt: "Runtime", agent: str, task: str, args: dict) -> str:
    """``mode="single"``: one BM25 query with the sub-task, passages prepended, one answer."""
    query = args.get("agent_input") or task
    hits = rt.corpus.search(query, rt.settings.search_top_k)
    passages = "\n\n".join(f"[{i + 1}] {d[:2000]}" for i, d in enumerate(hits)) or "(no documents matched)"
    return rt.ask(
        f"Search results for {query!r}:\n{passages}\n\n{task}\n\nAnswer using the search results where "
        "they help; cite them as [n].",
        (agent, "answer"),
    )

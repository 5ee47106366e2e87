"""Continuous batching (TextGenerator.open_decoder): rows join and leave between steps, each step
reads every active row's token in one forward pass, and each row's text is what stream() gives
for the same request; chat prompts ({"messages": [...]}) for runs trained on pairs."""

import pytest
import torch

from generators.text import TextConfig, TextGenerator, TextSampleConfig
from generators.text.data import parse_example
from generators.text.model import GPT, GPTShape, KVCache, SlotCache
from generators.text.tokenizer import PROMPT, RESPONSE, BPETokenizer, CharTokenizer
from studio.errors import StudioError

ALPHABET = "abcdefghij klmnopqrstuvwxyz.?"
MULTILINGUAL = "The quick brown fox. 敏捷的棕色狐狸跳过了懒狗。素早い茶色の狐。🦊🐶✨ façade.\n" * 20
QA = [("hi?", "hello."), ("bye?", "see you."), ("name?", "studio."), ("why?", "because.")]
GREEDY = TextSampleConfig(temperature=0, max_new_tokens=40)


def untrained(tokenizer, block=48, fmt="text") -> TextGenerator:
    gen = TextGenerator(TextConfig(block_size=block, n_layer=2, n_head=2, n_embd=32))
    gen.tokenizer, gen.format = tokenizer, fmt
    torch.manual_seed(0)
    gen.model = gen.build().eval()
    return gen


@pytest.fixture(scope="module")
def answering():
    """A pairs run that learned four answers by heart (a few seconds of training)."""
    gen = untrained(CharTokenizer.train("".join(q + a for q, a in QA) + ALPHABET + "\n"), block=64,
                    fmt="pairs")
    x, y, w = gen._pad([gen.encode_example([qa]) for qa in QA])
    gen.model.train()
    optimizer = torch.optim.AdamW(gen.model.parameters(), lr=2e-2)
    for _ in range(50):
        _, loss = gen.model(x, y, loss_weights=w)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    gen.model.eval()
    return gen


def streamed(gen, params, seed, prompt) -> str:
    with torch.no_grad():
        return "".join(gen.stream(params, seed, prompt))


def run_to_the_end(decoder, texts: dict, pieces_seen: list | None = None) -> dict:
    """Step until no row is active; each row's text and its last piece."""
    last = {}
    while decoder.active:
        for piece in decoder.step():
            texts[piece.row] = texts.get(piece.row, "") + piece.text
            last[piece.row] = piece
            if pieces_seen is not None:
                pieces_seen.append(piece)
    return last


def count_forward_passes(gen, calls: list):
    """Record the rows of every batched step (GPT.decode_rows) the model is asked for."""
    decode_rows = gen.model.decode_rows

    def recording(idx, step):
        calls.append(list(step.rows))
        return decode_rows(idx, step)
    gen.model.decode_rows = recording


def test_greedy_rows_of_different_prompts_equal_their_unbatched_streams_in_one_pass_a_step():
    gen = untrained(CharTokenizer.train(ALPHABET), block=64)  # no row outgrows it
    prompts = ["a", "hello world", "the quick brown fox jumps", None]
    decoder = gen.open_decoder(4)
    calls = []
    count_forward_passes(gen, calls)
    rows = [decoder.add(GREEDY, 0, p) for p in prompts]
    assert rows == [0, 1, 2, 3] and decoder.active == 4
    texts = {}
    run_to_the_end(decoder, texts)
    assert [texts[r] for r in rows] == [streamed(gen, GREEDY, 0, p) for p in prompts]
    # 40 tokens each: the first from the prefill, then one batched forward a step for all rows.
    assert len(calls) == GREEDY.max_new_tokens - 1 and all(c == rows for c in calls)
    assert decoder.active == 0 and decoder.step() == []


def test_a_row_that_joins_later_equals_its_unbatched_stream():
    gen = untrained(CharTokenizer.train(ALPHABET))
    decoder = gen.open_decoder(3)
    early = decoder.add(GREEDY, 0, "abc")
    texts = {}
    for _ in range(7):  # the first row is 7 tokens in when the others join
        for piece in decoder.step():
            texts[piece.row] = texts.get(piece.row, "") + piece.text
    late = decoder.add(GREEDY, 0, "the sea is calm")
    later = decoder.add(TextSampleConfig(temperature=0, max_new_tokens=5), 0, "x")
    calls = []
    count_forward_passes(gen, calls)
    run_to_the_end(decoder, texts)
    assert texts[early] == streamed(gen, GREEDY, 0, "abc")
    assert texts[late] == streamed(gen, GREEDY, 0, "the sea is calm")
    assert texts[later] == streamed(gen, TextSampleConfig(temperature=0, max_new_tokens=5), 0, "x")
    # Only the active rows are read: the short row leaves after 5 tokens, the others go on.
    assert [early, late, later] in calls and [early, late] in calls


@pytest.mark.parametrize("fmt", ["text", "pairs"])
def test_rows_that_outgrow_a_tiny_block_slide_as_the_unbatched_decode_does(fmt):
    gen = untrained(CharTokenizer.train(ALPHABET), block=16, fmt=fmt)
    params = TextSampleConfig(temperature=0, max_new_tokens=70)
    prompts = ["ab", "klmnop qrs", "the quick brown fox jumps over"]  # the last is over the block
    decoder = gen.open_decoder(4)
    rows = [decoder.add(params, 0, p) for p in prompts]
    texts, seen = {}, []
    run_to_the_end(decoder, texts, seen)
    assert [texts[r] for r in rows] == [streamed(gen, params, 0, p) for p in prompts]
    longest = max(piece.tokens for piece in seen)
    assert longest > 3 * 16  # a row's window slid several times


def test_a_pairs_run_stops_at_its_end_token_or_at_max_new_tokens(answering):
    decoder = answering.open_decoder(4)
    whole = decoder.add(GREEDY, 0, "bye?")
    cut = decoder.add(TextSampleConfig(temperature=0, max_new_tokens=3), 0, "bye?")
    assert decoder.prompt_tokens(whole) == len("bye?") + 2  # <|prompt|> bye? <|response|>
    texts = {}
    last = run_to_the_end(decoder, texts)
    assert texts[whole] == "see you." == streamed(answering, GREEDY, 0, "bye?")
    assert last[whole].done and last[whole].reason == "stop"
    assert last[whole].tokens == len("see you.") + 1  # and <|end|>
    assert texts[cut] == "see" and last[cut].reason == "length" and last[cut].tokens == 3


def test_stop_strings_end_a_row_and_are_not_shown():
    gen = untrained(CharTokenizer.train(ALPHABET))
    full = streamed(gen, GREEDY, 0, "abc")
    stop = full[10:12]
    params = TextSampleConfig(temperature=0, max_new_tokens=40, stop=[stop])
    decoder = gen.open_decoder(2)
    row = decoder.add(params, 0, "abc")
    other = decoder.add(GREEDY, 0, "abc")
    texts = {}
    last = run_to_the_end(decoder, texts)
    assert texts[row] == full[:full.find(stop)] == streamed(gen, params, 0, "abc")
    assert last[row].reason == "stop" and last[row].tokens < 40
    assert texts[other] == full and last[other].reason == "length"


def test_pieces_are_whole_characters_and_a_finished_row_is_freed_at_once():
    gen = untrained(BPETokenizer.train([MULTILINGUAL], vocab_size=400))
    params = TextSampleConfig(temperature=0, max_new_tokens=60)
    decoder = gen.open_decoder(2)
    rows = [decoder.add(params, 0, "狐狸"), decoder.add(TextSampleConfig(temperature=0, max_new_tokens=4), 0, "The")]
    texts, seen = {}, []
    while decoder.active:
        step = decoder.step()
        seen += step
        for piece in step:
            texts[piece.row] = texts.get(piece.row, "") + piece.text
            if piece.done:
                assert decoder.rows[piece.row] is None  # free for the next request already
    assert texts[rows[0]] == streamed(gen, params, 0, "狐狸")
    for piece in seen:
        assert piece.text.encode("utf-8").decode("utf-8") == piece.text
        assert not any("\ud800" <= c <= "\udfff" for c in piece.text)
    counts = [p.tokens for p in seen if p.row == rows[0]]
    assert counts == list(range(1, 61))


def test_drop_frees_a_row_that_the_next_add_reuses_and_a_full_decoder_says_so():
    gen = untrained(CharTokenizer.train(ALPHABET))
    decoder = gen.open_decoder(2)
    first, second = decoder.add(GREEDY, 0, "abc"), decoder.add(GREEDY, 0, "klm")
    for _ in range(5):
        decoder.step()
    with pytest.raises(ValueError, match="all 2 rows are busy"):
        decoder.add(GREEDY, 0, "xyz")
    decoder.drop(first)
    assert decoder.active == 1 and all(piece.row == second for piece in decoder.step())
    with pytest.raises(ValueError, match="row 0 is not under way"):
        decoder.drop(first)
    reused = decoder.add(GREEDY, 0, "the sea")
    assert reused == first
    texts = {}
    run_to_the_end(decoder, texts)
    # the old row's keys in the slot never reach the new one
    assert texts[reused] == streamed(gen, GREEDY, 0, "the sea")


@pytest.mark.parametrize("params", [
    TextSampleConfig(temperature=0.8, max_new_tokens=50),
    TextSampleConfig(temperature=1.2, top_k=5, top_p=0.9, repetition_penalty=1.3, max_new_tokens=50),
])
def test_a_sampled_row_alone_in_the_decoder_equals_its_unbatched_stream(params):
    gen = untrained(CharTokenizer.train(ALPHABET), block=24)
    decoder = gen.open_decoder(3)
    for seed, prompt in [(1, "abc"), (2, "abc"), (7, "klmno pq")]:
        row = decoder.add(params, seed, prompt)
        texts = {}
        run_to_the_end(decoder, texts)
        assert texts[row] == streamed(gen, params, seed, prompt)
    assert streamed(gen, params, 1, "abc") != streamed(gen, params, 2, "abc")  # seeds matter


def test_decoding_rows_of_a_slot_cache_gives_each_rows_own_logits():
    """GPT.decode_rows over rows of different lengths, side by side or not, computes what a
    forward with each row's own KVCache computes."""
    torch.manual_seed(0)
    model = GPT(GPTShape(vocab_size=40, block_size=32, n_layer=2, n_head=2, n_embd=32)).eval()
    rng = torch.Generator().manual_seed(1)
    contexts = [torch.randint(40, (1, n), generator=rng) for n in (3, 9, 20, 5)]
    slots = SlotCache(5, 32)
    with torch.no_grad():
        for row, context in enumerate(contexts):
            model(context, cache=slots.prefill(row))
        following = torch.randint(40, (4, 1), generator=rng)
        for rows in ([0, 1, 2, 3], [1, 3]):  # adjacent rows (a view) and scattered ones (a copy)
            before = list(slots.lengths)
            logits = model.decode_rows(following[rows], slots.step(rows, torch.device("cpu")))
            for k, row in enumerate(rows):
                cache = KVCache(32)
                model(contexts[row], cache=cache)
                alone, _ = model(following[row:row + 1], cache=cache)
                assert torch.allclose(logits[k], alone[0, -1], atol=1e-5)
                contexts[row] = torch.cat([contexts[row], following[row:row + 1]], dim=1)
            assert [slots.lengths[r] - before[r] for r in range(5)] == [int(r in rows) for r in range(5)]


def test_a_classify_run_has_no_decoder():
    assert TextGenerator(TextConfig(task="classify")).open_decoder(4) is None


# --- chat prompts ---------------------------------------------------------------------------
CHAT = [{"role": "system", "content": "be brief."}, {"role": "user", "content": "hi?"},
        {"role": "assistant", "content": "hello."}, {"role": "user", "content": "bye?"}]


def test_a_chat_prompt_reads_as_training_encodes_the_conversation(answering):
    gen = answering
    ids, pinned = gen._context_ids({"messages": CHAT})
    # Training's encoding of the same conversation with its answer, up to that answer.
    answer = "see you."
    turns = parse_example({"messages": CHAT + [{"role": "assistant", "content": answer}]}, "x")
    trained, weights = gen.encode_example(turns)
    assert ids == trained[:len(trained) - len(answer) - 1].tolist() and pinned == 1
    assert ids[-1] == gen.tokenizer.special_id(RESPONSE) and weights[len(ids):].all()
    # It samples, streams and decodes alike; the sample keeps the prompt as given.
    prompt = {"messages": CHAT}
    with torch.no_grad():
        sample = gen.sample(GREEDY, prompt=prompt)[0]
    decoder = gen.open_decoder(1)
    row = decoder.add(GREEDY, 0, prompt)
    assert decoder.prompt_tokens(row) == len(ids)
    texts = {}
    run_to_the_end(decoder, texts)
    assert sample.data == texts[row] == streamed(gen, GREEDY, 0, prompt)
    assert sample.meta["prompt"] == prompt


def test_a_long_chat_is_cut_from_the_left_keeping_one_prompt_token_first():
    gen = untrained(CharTokenizer.train(ALPHABET), fmt="pairs")
    messages = []
    for turn in range(6):
        messages += [{"role": "user", "content": f"question {'abcdefg'[turn]}?"},
                     {"role": "assistant", "content": "answer."}]
    messages.append({"role": "user", "content": "last one?"})
    whole, _ = gen._context_ids({"messages": messages})
    prompt_id = gen.tokenizer.special_id(PROMPT)
    opened_on_a_turn = 0
    for block in range(16, 48):
        gen.config.block_size = block
        ids, _ = gen._context_ids({"messages": messages})
        assert ids[0] == prompt_id and ids[1] != prompt_id  # never two of them
        assert ids[1:] == whole[len(whole) - len(ids) + 1:]  # the tail of the conversation
        assert len(ids) <= block - gen._answer_room()
        opened_on_a_turn += ids == whole[len(whole) - len(ids):]
        note = gen.context_note({"messages": messages}, GREEDY)
        assert "too many for the model's context" in note
    assert opened_on_a_turn  # some cuts fell on a turn's <|prompt|>


@pytest.mark.parametrize("messages, said", [
    ([], "'messages' must be a non-empty list"),
    ("hi", "'messages' must be a non-empty list"),
    (CHAT[:3], "ends with an assistant message"),
    ([{"role": "robot", "content": "hi"}], "message 1 needs a role"),
    ([{"role": "user", "content": "hi"}, {"role": "user"}], "message 2 needs a role"),
])
def test_a_bad_conversation_is_told_what_is_wrong(messages, said):
    gen = untrained(CharTokenizer.train(ALPHABET), fmt="pairs")
    prompt = {"messages": messages}
    with pytest.raises(StudioError, match=said):
        gen.sample(GREEDY, prompt=prompt)
    with pytest.raises(StudioError, match=said):
        list(gen.stream(GREEDY, 0, prompt))
    decoder = gen.open_decoder(1)
    with pytest.raises(StudioError, match=said):
        decoder.add(GREEDY, 0, prompt)
    assert decoder.active == 0  # the row stays free


def test_a_plain_text_run_refuses_chat_messages_and_odd_prompts():
    gen = untrained(CharTokenizer.train(ALPHABET))
    with pytest.raises(StudioError, match="not trained on prompt/response pairs.*plain text prompt"):
        gen.sample(GREEDY, prompt={"messages": CHAT})
    with pytest.raises(StudioError, match="not trained on prompt/response pairs"):
        gen.open_decoder(1).add(GREEDY, 0, {"messages": CHAT})
    with pytest.raises(StudioError, match="a prompt is text"):
        gen.open_decoder(1).add(GREEDY, 0, 42)
    pairs = untrained(CharTokenizer.train(ALPHABET), fmt="pairs")
    with pytest.raises(StudioError, match="a chat prompt is"):
        pairs.sample(GREEDY, prompt={"text": "hi"})

"""Sampling strategies on hand-made distributions; KV cache against full recomputation;
streaming that never splits a character; stop strings; seeds."""

import pytest
import torch

from generators.text import TextConfig, TextGenerator, TextSampleConfig
from generators.text.model import GPT, GPTShape, generate, window_start
from generators.text.sampling import choose, repetition_penalty, top_k_filter, top_p_filter
from generators.text.tokenizer import BPETokenizer, CharTokenizer

MULTILINGUAL = ("The quick brown fox. 敏捷的棕色狐狸跳过了懒狗。素早い茶色の狐。"
                "الثعلب البني السريع 🦊🐶✨ Ünïcödé façade.\n") * 30


def greedy(logits, history):
    return logits.argmax(-1, keepdim=True)


def test_top_k_one_equals_greedy():
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    history = torch.zeros(4, 1, dtype=torch.long)
    rng = torch.Generator().manual_seed(1)
    for _ in range(10):
        picked = choose(logits, history, temperature=1.3, top_k=1, generator=rng)
        assert torch.equal(picked, logits.argmax(-1, keepdim=True))


def test_top_p_keeps_the_smallest_nucleus():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    kept = lambda p: torch.isfinite(top_p_filter(logits, p))[0].tolist()
    assert kept(0.5) == [True, False, False, False]
    assert kept(0.6) == [True, True, False, False]
    assert kept(0.8) == [True, True, False, False]
    assert kept(0.81) == [True, True, True, False]
    assert kept(1.0) == [True, True, True, True]
    shuffled = logits[:, [2, 0, 3, 1]]  # order must not matter
    assert torch.isfinite(top_p_filter(shuffled, 0.6))[0].tolist() == [False, True, False, True]
    assert torch.isfinite(top_p_filter(logits, 1e-9))[0].tolist() == [True, False, False, False]


def test_repetition_penalty_on_a_hand_made_distribution():
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    history = torch.tensor([[0, 1, 1]])
    out = repetition_penalty(logits, history, 2.0)
    assert out.tolist() == [[1.0, -2.0, 0.5, 3.0]]  # seen: positive halved, negative doubled
    assert repetition_penalty(logits, history, 1.0) is logits


def test_top_k_filter():
    logits = torch.tensor([[1.0, 4.0, 3.0, 2.0]])
    assert torch.isfinite(top_k_filter(logits, 2))[0].tolist() == [False, True, True, False]


def tiny_model(vocab=40, block=32, seed=0):
    torch.manual_seed(seed)
    return GPT(GPTShape(vocab_size=vocab, block_size=block, n_layer=2, n_head=2, n_embd=32)).eval()


def test_window_slides_by_a_quarter_block_and_never_exceeds_it():
    block = 16
    lengths = [L - window_start(L, block) for L in range(1, 200)]
    assert max(lengths) == block and min(lengths[block:]) == block - block // 4
    starts = [window_start(L, block) for L in range(1, 200)]
    assert all(b >= a for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize("block, pinned", [(32, 0), (64, 0), (32, 1), (32, 4)])
def test_kv_cache_equals_full_recomputation_across_the_window_boundary(block, pinned):
    model = tiny_model(block=block)
    prompt = torch.randint(40, (2, 5), generator=torch.Generator().manual_seed(3))
    cached = torch.cat(list(generate(model, prompt, 200, greedy, use_cache=True, pinned=pinned)), dim=1)
    full = torch.cat(list(generate(model, prompt, 200, greedy, use_cache=False, pinned=pinned)), dim=1)
    assert 5 + 200 > 3 * block  # the window slid several times
    assert torch.equal(cached, full)


def test_pinned_tokens_open_every_window_as_it_slides():
    block, pinned = 16, 3
    model = tiny_model(block=block)
    windows = []
    forward = model.forward

    def recording(idx, *args, **kwargs):
        windows.append(idx)
        return forward(idx, *args, **kwargs)

    model.forward = recording
    prompt = torch.randint(40, (2, 6), generator=torch.Generator().manual_seed(4))
    new = torch.cat(list(generate(model, prompt, 60, greedy, use_cache=False, pinned=pinned)), dim=1)
    tokens = torch.cat([prompt, new], dim=1)
    assert all(torch.equal(w[:, :pinned], prompt[:, :pinned]) and w.size(1) <= block for w in windows)
    # The rest slides within the room the pinned tokens leave, as window_start says.
    last = windows[-1]
    rest = tokens[:, pinned:-1]
    assert torch.equal(last[:, pinned:], rest[:, window_start(rest.size(1), block - pinned):])
    with pytest.raises(ValueError, match="leave room in the block"):
        next(generate(model, prompt, 1, greedy, pinned=block))


def test_cached_logits_match_the_full_forward():
    model = tiny_model()
    tokens = torch.randint(40, (3, 20), generator=torch.Generator().manual_seed(5))
    from generators.text.model import KVCache
    cache = KVCache(32)
    first, _ = model(tokens[:, :12], cache=cache, all_logits=True)
    rest, _ = model(tokens[:, 12:], cache=cache, all_logits=True)  # a chunk after the cache
    full, _ = model(tokens, all_logits=True)
    assert torch.allclose(torch.cat([first, rest], 1), full, atol=1e-5)


def make_generator(tokenizer, block=48, fmt="text"):
    gen = TextGenerator(TextConfig(block_size=block, n_layer=2, n_head=2, n_embd=32))
    gen.tokenizer = tokenizer
    gen.format = fmt
    torch.manual_seed(0)
    gen.model = gen.build().eval()
    return gen


@pytest.fixture(params=["char", "bpe"])
def any_language_generator(request):
    if request.param == "char":
        tk = CharTokenizer.train(MULTILINGUAL)
    else:
        tk = BPETokenizer.train([MULTILINGUAL], vocab_size=400)
    return make_generator(tk)


def test_streamed_pieces_are_whole_characters_and_join_to_the_sample(any_language_generator):
    gen = any_language_generator
    params = TextSampleConfig(temperature=1.5, top_k=0, max_new_tokens=150)
    with torch.no_grad():
        pieces = list(gen.stream(params, seed=4, prompt="狐狸"))
        sample = gen.sample(params, n=1, seed=4, prompt="狐狸")[0]
    assert "".join(pieces) == sample.data.removeprefix("狐狸")
    for piece in pieces:
        assert piece and piece.encode("utf-8").decode("utf-8") == piece
        assert not ("\ud800" <= piece[0] <= "\udfff")  # no lone surrogate halves
    if gen.tokenizer.kind == "bpe":  # some tokens are parts of a character: they were held back
        ids = gen.tokenizer.encode(sample.data)
        partial = [i for i in ids if gen.tokenizer.token_bytes(i) and
                   not _is_whole_utf8(gen.tokenizer.token_bytes(i))]
        assert partial, "the BPE vocabulary should split some multi-byte characters"


def _is_whole_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def test_same_seed_same_text_and_batches_agree(any_language_generator):
    gen = any_language_generator
    params = TextSampleConfig(temperature=1.0, max_new_tokens=40)
    with torch.no_grad():
        a = gen.sample(params, n=3, seed=9)
        b = gen.sample(params, n=3, seed=9)
        c = gen.sample(params, n=3, seed=10)
    assert [s.data for s in a] == [s.data for s in b]
    assert [s.data for s in a] != [s.data for s in c]
    assert len({s.data for s in a}) > 1  # the rows of one batch differ


def test_stop_strings_stop_and_are_not_shown():
    tk = CharTokenizer.train("abcdefghij")
    gen = make_generator(tk)
    params = TextSampleConfig(temperature=0, max_new_tokens=60)
    with torch.no_grad():
        full = gen.sample(params, prompt="abc")[0].data[3:]
        stop = full[10:12]
        cut = gen.sample(TextSampleConfig(temperature=0, max_new_tokens=60, stop=[stop]), prompt="abc")
        streamed = "".join(gen.stream(TextSampleConfig(temperature=0, max_new_tokens=60, stop=[stop]),
                                      prompt="abc"))
    expected = full[:full.find(stop)]
    assert cut[0].data == "abc" + expected and streamed == expected
    never = TextSampleConfig(temperature=0, max_new_tokens=60, stop=["never-seen-stop"])
    with torch.no_grad():
        assert gen.sample(never, prompt="abc")[0].data[3:] == full  # runs to max_new_tokens


def test_a_sample_says_whether_it_ended_by_itself_or_at_the_token_limit():
    tk = CharTokenizer.train("abcdefghij")
    gen = make_generator(tk)
    with torch.no_grad():
        full = gen.sample(TextSampleConfig(temperature=0, max_new_tokens=20), prompt="abc")[0]
        # A stop string made of the very last token: the sample ended by itself, on the limit.
        last = full.data[-1]
        first = full.data[3:].find(last)
        stopped = gen.sample(TextSampleConfig(temperature=0, max_new_tokens=first + 1,
                                              stop=[last]), prompt="abc")[0]
    assert full.meta["finish_reason"] == "length"
    assert stopped.meta["finish_reason"] == "stop"


def test_long_prompt_is_handled_and_said():
    tk = CharTokenizer.train("abcdefghij ")
    gen = make_generator(tk, block=32)
    params = TextSampleConfig(temperature=0, max_new_tokens=10)
    with torch.no_grad():
        sample = gen.sample(params, prompt="abcdefghij " * 10)[0]
    assert len(sample.data) == 110 + 10
    assert "more than the model's context of 32" in sample.meta["note"]


def test_unknown_characters_map_to_unk_and_generate_fine():
    tk = CharTokenizer.train("abc")
    gen = make_generator(tk)
    with torch.no_grad():
        sample = gen.sample(TextSampleConfig(temperature=0, max_new_tokens=5), prompt="ab语")[0]
    assert sample.data.startswith("ab语") and len(sample.data) == 8


@pytest.mark.parametrize("dtype, atol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("tokens", [1, 7, 64])
def test_explicit_attention_is_causal_attention_forward_and_backward(dtype, atol, tokens):
    """The bf16 CPU path (plain matmuls and a softmax) computes what SDPA computes."""
    from torch.nn import functional as F
    attention = GPT(GPTShape(vocab_size=40, n_layer=1, n_head=2, n_embd=32)).transformer.h[0].attn
    rng = torch.Generator().manual_seed(7)
    q, k, v = (torch.randn(3, 2, tokens, 16, generator=rng).to(dtype).requires_grad_()
               for _ in range(3))
    upstream = torch.randn(3, 2, tokens, 16, generator=rng).to(dtype)
    explicit = attention._explicit_causal_attention(q, k, v)
    grads = torch.autograd.grad(explicit, (q, k, v), upstream)
    reference = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    reference_grads = torch.autograd.grad(reference, (q, k, v), upstream)
    assert torch.allclose(explicit.float(), reference.float(), atol=atol)
    for got, want in zip(grads, reference_grads):
        assert torch.allclose(got.float(), want.float(), atol=2 * atol)
    # a later token never changes an earlier one's output
    changed_v = v.detach().clone()
    changed_v[:, :, -1] += 1
    again = attention._explicit_causal_attention(q.detach(), k.detach(), changed_v)
    assert torch.equal(again[:, :, :-1], explicit.detach()[:, :, :-1])


def test_explicit_attention_is_taken_for_short_bf16_blocks_on_a_cpu_only():
    from generators.text.model import EXPLICIT_ATTENTION_MAX_TOKENS, explicit_attention_pays
    short = torch.zeros(1, 2, 64, 16, dtype=torch.bfloat16)
    assert explicit_attention_pays(short)
    assert not explicit_attention_pays(short.float())  # fp32: SDPA is as fast or faster
    long = torch.zeros(1, 2, EXPLICIT_ATTENTION_MAX_TOKENS + 1, 16, dtype=torch.bfloat16)
    assert not explicit_attention_pays(long)  # the scores grow as T^2: SDPA's kernel wins


def test_a_bf16_model_trains_and_samples_through_both_attention_paths():
    """Under bf16 autocast the training forward (explicit attention) and the cached sampling
    forward (SDPA) give the same logits up to bf16 rounding."""
    model = tiny_model()
    tokens = torch.randint(40, (2, 24), generator=torch.Generator().manual_seed(4))
    from generators.text.model import KVCache
    with torch.autocast("cpu", dtype=torch.bfloat16):
        full, _ = model(tokens, all_logits=True)
        cache = KVCache(32)
        first, _ = model(tokens[:, :1], cache=cache, all_logits=True)
        steps = [first] + [model(tokens[:, i:i + 1], cache=cache, all_logits=True)[0]
                           for i in range(1, 24)]
    assert torch.allclose(torch.cat(steps, 1).float(), full.float(), atol=5e-2)
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, loss = model(tokens[:, :-1], tokens[:, 1:])
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_decoding_on_a_cpu_stays_in_fp32_where_training_takes_bf16():
    """One token at a time, bf16 autocast decodes slower than fp32 on a CPU: sampling leaves
    the run's autocast out there (it still trains and evaluates under it)."""
    gen = make_generator(CharTokenizer.train(MULTILINGUAL))
    entered = []

    def bf16_autocast():
        entered.append(True)
        return torch.autocast("cpu", dtype=torch.bfloat16)

    gen.autocast = bf16_autocast
    gen.device = torch.device("cpu")
    samples = gen.sample(TextSampleConfig(temperature=0, max_new_tokens=40), n=2, seed=1)
    assert not entered and len(samples) == 2


def test_an_explained_sample_gives_each_tokens_probability_and_the_likeliest_alternatives():
    gen = make_generator(CharTokenizer.train(MULTILINGUAL))
    plain = gen.sample(TextSampleConfig(temperature=0, max_new_tokens=30), n=2, seed=3)
    explained = gen.sample(TextSampleConfig(temperature=0, max_new_tokens=30, explain=True),
                           n=2, seed=3)
    assert "tokens" not in plain[0].meta
    for sample, same in zip(explained, plain):
        assert sample.data == same.data  # explaining does not change what is generated
        records = sample.meta["tokens"]
        assert len(records) == 30
        assert "\n" + "".join(r["token"] for r in records) == sample.data
        for r in records:
            probabilities = [p for _, p in r["alternatives"]]
            assert len(probabilities) == 5 and probabilities == sorted(probabilities, reverse=True)
            assert 0 < r["p"] <= 1 and sum(probabilities) <= 1 + 1e-4
            assert r["alternatives"][0] == [r["token"], r["p"]]  # greedy takes the likeliest


def test_generate_json_explains_text_and_leaves_other_generators_alone(tmp_path, capsys):
    from studio import api
    from studio.cli import main
    root = __import__("pathlib").Path(__file__).resolve().parents[1] / "assets" / "demo"
    image = api.generate(str(root / "image"), n=1, explain=True)  # it has no explain setting
    assert "tokens" not in image[0].meta
    assert main(["generate", str(root / "text"), "--prompt", "The", "--json",
                 "--set", "max_new_tokens=8"]) == 0
    first = __import__("json").loads(capsys.readouterr().out.splitlines()[0])
    assert len(first["meta"]["tokens"]) == 8
    assert main(["generate", str(root / "text"), "--prompt", "The", "--json",
                 "--set", "max_new_tokens=8", "--set", "explain=false"]) == 0
    assert "tokens" not in __import__("json").loads(capsys.readouterr().out.splitlines()[0])["meta"]

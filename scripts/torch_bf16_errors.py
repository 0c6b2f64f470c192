#!/usr/bin/env python3
"""How far transformers itself lands from its fp32 golden outputs when the fixture models run in bf16.

test/test_bf16.cpp holds qft's bf16 activations to these numbers (qft must be no worse than PyTorch's bf16).

    /opt/fixenv/bin/python scripts/torch_bf16_errors.py
"""
import os

import safetensors.torch
import torch
from transformers import LlamaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

for name in ["mha_untied", "gqa_tied", "awkward"]:
    d = os.path.join(ROOT, "test", "fixtures", name)
    golden = safetensors.torch.load_file(os.path.join(d, "golden.safetensors"))
    model = LlamaForCausalLM.from_pretrained(d, dtype=torch.bfloat16, attn_implementation="eager")
    out = model(input_ids=golden["input_ids"].long(), labels=golden["labels"].long())
    out.loss.backward()
    want = golden["logits"]
    logits_rel = ((out.logits.float() - want).abs().max() / want.abs().max()).item()
    worst_rel, worst_cos = 0.0, 1.0
    for pname, p in model.named_parameters():
        g, ref = p.grad.float().flatten(), golden["grad." + pname].flatten()
        worst_rel = max(worst_rel, ((g - ref).abs().max() / ref.abs().max()).item())
        worst_cos = min(worst_cos, torch.nn.functional.cosine_similarity(g, ref, dim=0).item())
    print(f"{name}: logits max rel {logits_rel:.4f}, loss {out.loss.item():.5f} vs {golden['loss'].item():.5f}, "
          f"gradients worst max rel {worst_rel:.4f}, worst cosine {worst_cos:.5f}")

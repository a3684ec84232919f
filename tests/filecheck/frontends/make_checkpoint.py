"""Write a small random hgrn_bit checkpoint for the import filecheck tests.

usage: make_checkpoint.py DIR [--layers L] [--quantized] [--bf16]
"""

import argparse

import torch
from safetensors.torch import save_file

from mmfc.frontends.torch.modeling import init_random_
from mmfc.models import HGRNBitConfig, HGRNBitForCausalLM

parser = argparse.ArgumentParser()
parser.add_argument("dir")
parser.add_argument("--layers", type=int, default=1)
parser.add_argument("--quantized", action="store_true")
parser.add_argument("--bf16", action="store_true")
args = parser.parse_args()
config = HGRNBitConfig(vocab_size=40, hidden_size=16, num_hidden_layers=args.layers, intermediate_size=24)
model = init_random_(HGRNBitForCausalLM.from_config(config), 0)
model.save_pretrained(args.dir, quantized=args.quantized)
if args.bf16:
    save_file({k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}, f"{args.dir}/model.safetensors")

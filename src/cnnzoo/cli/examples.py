"""Two or three examples at the end of every command's --help, keyed by the command's words.

`cnnzoo.cli.build_parser` attaches them; tests/test_cli_fast.py fails for a command that has none.
"""
EXAMPLES = {
    "list": ["cnnzoo list 'resnet*'", "cnnzoo list --family mobilenet --sort macs", "cnnzoo list --json"],
    "info": ["cnnzoo info googlenet", "cnnzoo info vgg16 --brief"],
    "tour": ["cnnzoo tour", "cnnzoo tour --quick --chapters training,deploy --out runs/tour-quick"],
    "completion": ["cnnzoo completion bash > ~/.local/share/bash-completion/completions/cnnzoo",
                   "cnnzoo completion zsh > ~/.zfunc/_cnnzoo",
                   "cnnzoo completion fish > ~/.config/fish/completions/cnnzoo.fish"],
    "profile": ["cnnzoo profile alexnet --input-size 227 --only lecture",
                "cnnzoo profile resnet50 --depth 2 --format markdown",
                "cnnzoo profile vgg16 --batch-size 32 --train-memory adam"],
    "compare": ["cnnzoo compare alexnet vgg16", "cnnzoo compare alexnet vgg16 googlenet resnet50 --plot charts/"],
    "data": ["cnnzoo data list", "cnnzoo data check photos/", "cnnzoo data split photos/ --val 0.1 --test 0.1"],
    "data list": ["cnnzoo data list", "cnnzoo data list --data-root /data/torchvision --json"],
    "data check": ["cnnzoo data check photos/", "cnnzoo data check labels.csv"],
    "data split": ["cnnzoo data split photos/", "cnnzoo data split photos/ --val 0.2 --test 0.2 --seed 1 --force"],
    "train": ["cnnzoo train --model resnet18 --data digits",
              "cnnzoo train --model resnet18 --data cifar10 --download --aug trivialaugment --random-erasing 0.25",
              "cnnzoo train --model mobilenet_v2 --data photos/ --epochs 30 --out runs/photos",
              "cnnzoo train --resume runs/photos"],
    "evaluate": ["cnnzoo evaluate runs/digits", "cnnzoo evaluate runs/photos --split val --which last --tta 10crop",
                 "cnnzoo evaluate runs/digits runs/digits-s1 runs/digits-s2   # members and their ensemble",
                 "cnnzoo evaluate --model resnet50 --weights imagenet --data imagenet/val"],
    "bench": ["cnnzoo bench resnet50 mobilenet_v2 --batch-size 1,32", "cnnzoo bench 'vgg*' --mode train --budget 20"],
    "recommend": ["cnnzoo recommend --max-latency-ms 50", "cnnzoo recommend resnet50 mobilenet_v2 --max-params 10M"],
    "weights": ["cnnzoo weights list 'resnet*'",
                "cnnzoo weights convert resnet18.pth --model resnet18 --out resnet18.safetensors"],
    "weights list": ["cnnzoo weights list", "cnnzoo weights list resnet50", "cnnzoo weights list 'mobilenet*' --json"],
    "weights convert": ["cnnzoo weights convert resnet18-f37072fd.pth --model resnet18 --out resnet18.safetensors",
                        "cnnzoo weights convert runs/digits --model resnet18 --out digits.safetensors"],
    "layers": ["cnnzoo layers resnet18", "cnnzoo layers vgg16 --input-size 64"],
    "transfer": ["cnnzoo transfer features --model resnet18 --weights W --data photos/",
                 "cnnzoo transfer finetune --model resnet18 --weights W --data photos/ --shots 5"],
    "transfer features": ["cnnzoo transfer features --model resnet18 --weights W --data photos/ --layer pool",
                          "cnnzoo transfer features --model vgg16 --weights W --data photos/ --layer fc7 --C 0.1"],
    "transfer linear": ["cnnzoo transfer linear --model resnet18 --weights W --data photos/",
                        "cnnzoo transfer linear --model resnet18 --weights W --data photos/ --shots 10 --epochs 20"],
    "transfer finetune": ["cnnzoo transfer finetune --model resnet18 --weights W --data photos/",
                          "cnnzoo transfer finetune --model resnet18 --weights W --data photos/ --head-epochs 2 "
                          "--freeze-bn"],
    "export": ["cnnzoo export runs/digits", "cnnzoo export runs/digits --format onnx --dynamic-batch --out digits.onnx",
               "cnnzoo export runs/digits runs/digits-s1 --out ensemble.onnx   # one graph, mean of softmax"],
    "predict": ["cnnzoo predict runs/digits images/", "cnnzoo predict digits.onnx 'images/*.png' --top-k 3 --json",
                "cnnzoo predict runs/digits runs/digits-s1 images/   # their ensemble",
                "cnnzoo predict resnet50 --weights imagenet cat.jpg --tta 10crop"],
    "explain": ["cnnzoo explain runs/digits digit.png --out explained/",
                "cnnzoo explain resnet50 --weights imagenet cat.jpg dog.jpg --method gradcam occlusion --out explained/",
                "cnnzoo explain runs/photos photos/test/ --target cat --layer layer3 --out explained/"],
    "filters": ["cnnzoo filters runs/digits --out filters.png", "cnnzoo filters alexnet --weights imagenet --out conv1.png"],
    "activations": ["cnnzoo activations runs/digits digit.png --layer layer1 --out layer1.png",
                    "cnnzoo activations vgg16 --weights imagenet cat.jpg --layer features.28 --out conv5_3.png"],
    "serve": ["cnnzoo serve runs/digits", "cnnzoo serve digits.onnx --port 8080 --max-batch 32",
              "cnnzoo serve runs/digits runs/digits-s1   # their ensemble"],
}


def epilog(words: str) -> str | None:
    lines = EXAMPLES.get(words)
    return "examples:\n" + "\n".join(f"  {line}" for line in lines) if lines else None

"""Checks a built wheel as a user would get it: unpacked on its own (the checkout's editable
install hidden), it imports, was built against the torch in use, and its native ops agree
with stock PyTorch on a small AdamW step and a BatchNorm + ReLU forward + backward.

Usage: ``.venv/bin/python scripts/wheel_check.py dist/fastext-*.whl`` (``.ci/run`` runs it
after ``make wheel``).
"""

from __future__ import annotations

import sys
import tempfile
import zipfile


def main(wheel: str) -> None:
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        zipfile.ZipFile(wheel).extractall(tmp)
        # scikit-build-core's editable install answers imports of fastext from a meta-path
        # finder, ahead of sys.path: drop it so that the wheel's copy is the one imported.
        sys.meta_path = [f for f in sys.meta_path if "editable" not in type(f).__module__]
        sys.path.insert(0, tmp)
        import fastext

        assert fastext.__file__.startswith(tmp), f"imported {fastext.__file__}, not the wheel"
        info = fastext.build_info()
        print("wheel build_info:", info)
        assert info["torch_built_against"] == torch.__version__, info

        torch.manual_seed(0)
        p = torch.randn(7, 5)
        ref = torch.nn.Parameter(p.clone())
        mine = torch.nn.Parameter(p.clone())
        ref.grad = mine.grad = torch.randn(7, 5)
        torch.optim.AdamW([ref], lr=0.1, weight_decay=0.1).step()
        fastext.optim.AdamW([mine], lr=0.1, weight_decay=0.1).step()
        torch.testing.assert_close(mine, ref)

        x = torch.randn(4, 3, 5, 5, requires_grad=True)
        x_ref = x.detach().clone().requires_grad_()
        y = fastext.nn.BatchNormReLU2d(3)(x)
        y_ref = torch.relu(torch.nn.BatchNorm2d(3)(x_ref))
        g = torch.randn_like(y)
        y.backward(g)
        y_ref.backward(g)
        torch.testing.assert_close(y, y_ref)
        torch.testing.assert_close(x.grad, x_ref.grad)
    print("wheel check passed:", wheel)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])

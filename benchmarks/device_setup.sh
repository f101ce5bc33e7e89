#!/usr/bin/env bash
# On a lent GPU machine (no internet): install the carried wheels the image lacks, then set the env.
# Usage: source benchmarks/device_setup.sh   (with .wheels/ [and .wheels_cv/] carried)
python3 -c "import importlib.util as u; print('present:', {m: bool(u.find_spec(m)) for m in ['cv2','albumentations','lightning','pydantic','pynvml','tomli_w','transformers','torch']})"
pip install -q --no-index --find-links .wheels $( [ -d .wheels_cv ] && echo --find-links .wheels_cv ) \
  albumentations==2.0.8 lightning==2.6.6 tomli-w nvidia-ml-py 2>&1 | grep -v WARNING | tail -3
export PYTHONPATH=$PWD NO_ALBUMENTATIONS_UPDATE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
python3 -c "import torch, lightning, transformers, albumentations; print('torch', torch.__version__, 'lightning', lightning.__version__, 'transformers', transformers.__version__, 'albumentations', albumentations.__version__, torch.cuda.get_device_name(0))"

#!/usr/bin/env bash
# On a lent GPU machine (no internet): install the carried wheels the image lacks, then set the env.
# The image has torch, lightning, transformers, cv2 and pynvml, but not albumentations and its
# pure-Python/abi3 dependencies: carry `.wheels/` (cp312 wheels; see the closing notes) and
#   source benchmarks/device_setup.sh
python3 -m pip install -q --no-index --no-deps --find-links .wheels albumentations albucore simsimd stringzilla \
  pydantic pydantic_core annotated_types typing_inspection tomli_w platformdirs 2>&1 | grep -v -i warning | tail -5
export PYTHONPATH=$PWD NO_ALBUMENTATIONS_UPDATE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
python3 -c "import torch, lightning, transformers, albumentations; print('torch', torch.__version__, 'lightning', lightning.__version__, 'transformers', transformers.__version__, 'albumentations', albumentations.__version__, torch.cuda.get_device_name(0))"

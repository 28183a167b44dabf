"""placeholder"""
from erc.data.crema_d import SPEC as _K
import dataclasses
SPEC = dataclasses.replace(_K, release="MSP-PODCAST*")

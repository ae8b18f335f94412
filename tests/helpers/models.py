"""Every ``model=`` of the config tree at a tiny size: the overrides that narrow each one so
that a forward pass or a short run takes a moment (the runs check wiring, not learning). The
ResNet1d models state their lengths: theirs fit ``dataset.n_samples=64``; the pretrained
encoders take windows of seconds: theirs set 4096 samples (10.24 s at 400 Hz)."""

from helpers.configs import CONF_DIR

NARROW = {
    "resnet1d": ["model.blocks=[[8,16],[8,4],[8,1]]"],
    "resnet1d_small": ["model.blocks=[[8,16],[8,4],[8,1]]"],
    "resnet1d_keras": ["model.stem=[8,64]", "model.blocks=[[8,16],[8,4],[8,1]]"],
    "fcn_wang": ["model.filters=[8,8,8]"],
    "resnet1d_wang": ["model.planes=8"],
    "xresnet1d50": ["model.width=4", "model.stem_sizes=[4,4,16]", "model.layers=[1,1,1,1]"],
    "xresnet1d101": ["model.width=4", "model.stem_sizes=[4,4,16]", "model.layers=[1,1,1,1]"],
    "inception1d": ["model.filters=4", "model.bottleneck=4"],
    "lstm": ["model.hidden=4"],
    "lstm_bidir": ["model.hidden=4"],
    "merl_resnet18": ["model.n_samples=4096", "model.encoder_options.widths=[4,8]",
                      "model.encoder_options.blocks=[1,1]"],
    "ecgfounder": ["model.n_samples=4096", "model.encoder_options.base_filters=4",
                   "model.encoder_options.filters=[4,8]",
                   "model.encoder_options.blocks=[1,2]", "model.encoder_options.kernel_size=3",
                   "model.encoder_options.groups_width=4"],
    "ecg_fm": ["model.n_samples=4096", "model.encoder_options.conv_layers=[[8,2,2],[8,2,2]]",
               "model.encoder_options.dim=16", "model.encoder_options.depth=2",
               "model.encoder_options.heads=2", "model.encoder_options.ffn_dim=24",
               "model.encoder_options.pos_conv_kernel=4",
               "model.encoder_options.pos_conv_groups=2"],
    "hubert_ecg": ["model.n_samples=4096", "model.encoder_options.hidden_size=16",
                   "model.encoder_options.layers=2", "model.encoder_options.heads=2",
                   "model.encoder_options.ffn_dim=24", "model.encoder_options.conv_dim=[8,8]",
                   "model.encoder_options.conv_kernel=[10,3]",
                   "model.encoder_options.conv_stride=[5,2]",
                   "model.encoder_options.pos_conv_kernel=4",
                   "model.encoder_options.pos_conv_groups=2", "model.encoder_options.dropout=0",
                   "model.encoder_options.layerdrop=0"],
    "transformer1d": ["model.dim=16", "model.depth=1", "model.heads=2", "model.patch_size=16"],
}


def model_names() -> list[str]:
    """Every model config (``conf/model/*.yaml``), each of which needs a NARROW entry."""
    names = sorted(path.stem for path in (CONF_DIR / "model").glob("*.yaml"))
    missing = [name for name in names if name not in NARROW]
    assert not missing, f"add the tiny sizes of {missing} to tests/helpers/models.py NARROW"
    return names

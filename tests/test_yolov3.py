"""YOLOv3-MobileNetV1: shapes, loss, decoding, whole-network pruning and two-input export."""
import copy
import math

import numpy as np
import paddle
import paddle.nn as nn
import pytest
from paddle.static import InputSpec

from engine_checks import check_pruned_model, produced_mask, random_ratios, randomize_norm_stats, uniform
from paddleprune.errors import InvalidParameterError
from paddleprune.models import YOLOv3Net, get_model, list_models
from paddleprune.models.yolo_ops import YOLOv3Inference, yolov3_decode, yolov3_loss
from paddleprune.models.yolov3 import LeakyReLU, upsample2x
from paddleprune.prune import L1NormFilterPruner, apply_records

NUM_CLASSES = 3
SCALE = 0.25
SHAPE = [1, 3, 128, 128]
OUT_CHANNELS = 3 * (5 + NUM_CLASSES)


def _net(seed=0):
    paddle.seed(seed)
    return YOLOv3Net(num_classes=NUM_CLASSES, backbone_scale=SCALE)


def _batch():
    """Two 128x128 images; image 0 has two boxes, image 1 one box and a padded row."""
    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 1, (2, 3, 128, 128)).astype("float32")
    box = np.zeros((2, 3, 4), "float32")
    label = np.zeros((2, 3), "int32")
    score = np.zeros((2, 3), "float32")
    box[0, :2] = [[0.3, 0.3, 0.25, 0.3], [0.7, 0.6, 0.4, 0.5]]
    label[0, :2] = [0, 2]
    box[1, 0] = [0.5, 0.5, 0.6, 0.7]
    label[1, 0] = 1
    score[0, :2] = score[1, 0] = 1.0
    return [paddle.to_tensor(a) for a in (image, box, label, score)]


def _loss(net, batch):
    image, box, label, score = batch
    return yolov3_loss(net(image), box, label, score, net.anchors, net.anchor_masks, NUM_CLASSES)


@pytest.fixture(scope="module")
def trained():
    """A net trained 30 Adam steps on the fixed batch: losses, stem gradient after step 1."""
    net = _net()
    batch = _batch()
    opt = paddle.optimizer.Adam(learning_rate=1e-3, parameters=net.parameters())
    losses, stem_grad = [], None
    for step in range(30):
        loss = _loss(net, batch)
        loss.backward()
        if step == 0:
            stem_grad = np.abs(net.backbone.features[0][0].weight.grad.numpy()).sum()
        opt.step()
        opt.clear_grad()
        losses.append(loss.item())
    net.eval()
    return {"net": net, "batch": batch, "losses": losses, "stem_grad": stem_grad}


# -- network -------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [96, 128])
def test_output_shapes_for_a_dynamic_input_size(size):
    net = _net()
    net.eval()
    with paddle.no_grad():
        outs = net(paddle.rand([2, 3, size, size]))
    assert [list(o.shape) for o in outs] == [[2, OUT_CHANNELS, size // s, size // s] for s in (32, 16, 8)]


def test_structure_names_and_config():
    assert "YOLOv3" in list_models()
    net = _net()
    params = dict(net.named_parameters())
    # the backbone keeps MobileNetV1's names behind "backbone." and has no classifier
    v1 = dict(get_model("MobileNetV1", num_classes=10, scale=SCALE).named_parameters())
    backbone = {k[len("backbone."):]: list(p.shape) for k, p in params.items() if k.startswith("backbone.")}
    assert backbone == {k: list(p.shape) for k, p in v1.items() if k.startswith("features.")}
    # head widths: c = 128, 64, 32 at scale 0.25; transitions c/2; outputs 3 * (5 + 3)
    assert params["yolo_block.0.conv.0.0.weight"].shape == [128, 256, 1, 1]
    assert params["yolo_block.0.tip.0.weight"].shape == [256, 128, 3, 3]
    assert params["yolo_transition.0.0.weight"].shape == [64, 128, 1, 1]
    assert params["yolo_block.1.conv.0.0.weight"].shape == [64, 64 + 128, 1, 1]   # concat [route, C4]
    assert params["yolo_block.2.conv.0.0.weight"].shape == [32, 32 + 64, 1, 1]
    assert params["yolo_output.2.weight"].shape == [OUT_CHANNELS, 64, 1, 1]
    assert params["yolo_output.2.bias"].shape == [OUT_CHANNELS]
    config = net.get_config()
    assert config == {"name": "YOLOv3", "params": {
        "num_classes": 3, "backbone": "MobileNetV1", "backbone_scale": 0.25,
        "anchors": [[10, 13], [16, 30], [33, 23], [30, 61], [62, 45], [59, 119], [116, 90], [156, 198],
                    [373, 326]],
        "anchor_masks": [[6, 7, 8], [3, 4, 5], [0, 1, 2]]}}
    again = get_model(config["name"], **config["params"])
    assert [(k, p.shape) for k, p in again.named_parameters()] == [(k, p.shape) for k, p in net.named_parameters()]
    two = YOLOv3Net(num_classes=1, backbone_scale=0.25, anchor_masks=[[8], [4, 5], [0, 1, 2, 3]])
    assert [o.weight.shape[0] for o in two.yolo_output] == [6, 12, 24]


@pytest.mark.parametrize("kwargs, match", [
    ({"backbone": "ResNet34"}, r"YOLOv3: 'backbone' must be one of \['MobileNetV1'\]; got 'ResNet34'"),
    ({"num_classes": 0}, r"YOLOv3: 'num_classes' must be an int >= 1; got 0"),
    ({"backbone_scale": 0}, r"YOLOv3: 'scale' must be a number in \(0, 4\]; got 0"),
    ({"anchors": [[10, 13.5]]}, r"YOLOv3: 'anchors' must be a non-empty list of \[width, height\] pairs"),
    ({"anchor_masks": [[0], [1]]}, r"YOLOv3: 'anchor_masks' must be 3 non-empty lists .* indices into the 9 anchors"),
    ({"anchor_masks": [[9], [1], [2]]}, r"YOLOv3: 'anchor_masks' must be 3 non-empty lists"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(InvalidParameterError, match=match):
        YOLOv3Net(**kwargs)


def test_upsample_and_activation_match_paddle():
    x = paddle.randn([2, 3, 5, 7])
    ref = paddle.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
    np.testing.assert_array_equal(upsample2x(x).numpy(), ref.numpy())
    np.testing.assert_allclose(LeakyReLU(0.1)(x).numpy(), paddle.nn.functional.leaky_relu(x, 0.1).numpy(),
                               rtol=1e-6, atol=1e-7)


# -- loss and decoding ------------------------------------------------------------------------
def test_loss_is_positive_and_decreases_when_overfitting(trained):
    losses = trained["losses"]
    assert all(math.isfinite(v) and v > 0 for v in losses)
    assert losses[-1] < 0.6 * losses[0], losses
    assert sum(b < a for a, b in zip(losses, losses[1:])) >= 25, losses
    assert trained["stem_grad"] > 0          # gradients reach the first backbone conv


def test_padded_boxes_do_not_count():
    net = _net()
    net.eval()
    image, box, label, score = _batch()
    with paddle.no_grad():
        outs = net(image)
        base = yolov3_loss(outs, box, label, score, net.anchors, net.anchor_masks, NUM_CLASSES).item()
        more = paddle.concat([box, paddle.zeros([2, 2, 4])], axis=1)
        extra = yolov3_loss(outs, more, paddle.concat([label, paddle.zeros([2, 2], "int32")], axis=1),
                            paddle.concat([score, paddle.zeros([2, 2])], axis=1),
                            net.anchors, net.anchor_masks, NUM_CLASSES).item()
        fewer = yolov3_loss(outs, box[:, :1], label[:, :1], score[:, :1], net.anchors, net.anchor_masks,
                            NUM_CLASSES).item()
    assert extra == pytest.approx(base, rel=1e-6)
    assert fewer != pytest.approx(base, rel=1e-3)      # the second box of image 0 did count


def test_decode_places_a_handmade_prediction():
    """One confident prediction per image at a known cell/anchor decodes to the known box,
    in im_size (h, w) coordinates; every other cell is below the score threshold."""
    n, c = 2, NUM_CLASSES
    anchors, masks = YOLOv3Net(num_classes=c).anchors, YOLOv3Net(num_classes=c).anchor_masks
    outs = [np.full((n, 3, 5 + c, 128 // s, 128 // s), -10.0, "float32") for s in (32, 16, 8)]
    # level 0 (stride 32), anchor slot 0 = anchor 6 (116 x 90), cell gx=1, gy=2, half-size box
    outs[0][:, 0, 0:2, 2, 1] = 0.0                     # sigmoid = 0.5: cell centre
    outs[0][:, 0, 2:4, 2, 1] = math.log(0.5)           # w = 58, h = 45 input pixels
    outs[0][:, 0, 4, 2, 1] = 10.0                      # objectness
    outs[0][:, 0, 5 + 2, 2, 1] = 10.0                  # class 2
    outs = [paddle.to_tensor(o.reshape(n, -1, o.shape[3], o.shape[4])) for o in outs]
    im_size = paddle.to_tensor([[128, 128], [256, 64]], dtype="int32")   # (h, w)
    bbox, bbox_num = yolov3_decode(outs, im_size, anchors, masks, c)
    assert bbox_num.numpy().tolist() == [1, 1]
    b = bbox.numpy()
    assert b[:, 0].tolist() == [2, 2] and np.all(b[:, 1] > 0.99)
    cx, cy, w, h = 48.0, 80.0, 58.0, 45.0              # input pixels (128 x 128 input)
    np.testing.assert_allclose(b[0, 2:], [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], atol=1e-3)
    sx, sy = 64 / 128, 256 / 128
    np.testing.assert_allclose(b[1, 2:], [(cx - w / 2) * sx, (cy - h / 2) * sy, (cx + w / 2) * sx,
                                          (cy + h / 2) * sy], atol=1e-3)


def test_decode_boxes_sorted_and_inside_the_image(trained):
    net, image = trained["net"], trained["batch"][0]
    im_size = paddle.to_tensor([[128, 128], [300, 200]], dtype="int32")
    with paddle.no_grad():
        bbox, bbox_num = yolov3_decode(net(image), im_size, net.anchors, net.anchor_masks, NUM_CLASSES,
                                       nms_keep_topk=50)
    b, num = bbox.numpy(), bbox_num.numpy()
    assert num.dtype == np.int32 and num.shape == (2,) and num.sum() == b.shape[0] and b.shape[1] == 6
    assert num.min() > 0 and num.max() <= 50
    start = 0
    for (h, w), k in zip(im_size.numpy(), num):
        rows = b[start:start + k]
        start += k
        assert np.all(np.diff(rows[:, 1]) <= 0)                       # sorted by score
        assert np.all(rows[:, 1] >= 0.01) and np.all(rows[:, 1] <= 1)
        assert set(rows[:, 0].astype(int)) <= set(range(NUM_CLASSES))
        x1, y1, x2, y2 = rows[:, 2], rows[:, 3], rows[:, 4], rows[:, 5]
        assert np.all(x1 >= 0) and np.all(y1 >= 0) and np.all(x2 <= w) and np.all(y2 <= h)
        assert np.all(x1 <= x2) and np.all(y1 <= y2)


def test_decode_argument_errors():
    net = _net()
    outs = net(paddle.rand([1, 3, 64, 64]))
    size = paddle.to_tensor([[64, 64]], dtype="int32")
    with pytest.raises(InvalidParameterError, match="'nms_iou_threshold' must be a number in"):
        yolov3_decode(outs, size, net.anchors, net.anchor_masks, NUM_CLASSES, nms_iou_threshold=1.5)
    with pytest.raises(InvalidParameterError, match="one entry per level"):
        yolov3_decode(outs[:2], size, net.anchors, net.anchor_masks, NUM_CLASSES)
    with pytest.raises(InvalidParameterError, match=r"unknown keyword argument\(s\) \['iou'\]"):
        YOLOv3Inference(net, iou=0.5)


# -- pruning -------------------------------------------------------------------------------------
def test_every_conv_is_prunable_except_the_outputs():
    net = _net()
    pruner = L1NormFilterPruner(net, SHAPE)
    outputs = {f"yolo_output.{i}.weight" for i in range(3)}
    convs = {f"{name}.weight": layer for name, layer in net.named_sublayers() if isinstance(layer, nn.Conv2D)}
    assert len(convs) == 27 + 3 * 6 + 2 + 3       # backbone, blocks, transitions, outputs
    for name, layer in convs.items():
        group = pruner.find_group(name, 0)
        if name in outputs:
            assert not group.prunable and group.reason == "network output", (name, group)
        else:
            assert group.prunable, (name, group)
        if layer._groups == 1 and name != "backbone.features.0.0.weight":
            # input channels: every group that feeds this conv (two after a concat) is prunable
            feeding = [g for g in pruner.groups if g.member(name, 1) is not None]
            assert feeding and all(g.prunable for g in feeding), (name, [str(g) for g in feeding])


class _RecordingPruner(L1NormFilterPruner):
    """Keeps a copy of the model right after pruning (check_pruned_model then trains it)."""

    def prune_vars(self, ratios, axis=0, apply="impretive"):
        plan = super().prune_vars(ratios, axis, apply)
        self.pruned_copy = copy.deepcopy(self.model)
        return plan


@pytest.mark.parametrize("ratios", [uniform(0.5), random_ratios(3)], ids=["uniform0.5", "random"])
def test_masked_equals_shrunk_on_all_three_outputs(ratios):
    net = _net()
    pristine = copy.deepcopy(net)
    randomize_norm_stats(pristine)           # what check_pruned_model does to ``net``
    pruner, plan = check_pruned_model(net, SHAPE, ratios, pruner_cls=_RecordingPruner)
    pruned = pruner.pruned_copy
    pruned.eval()
    reference = copy.deepcopy(pristine)
    reference.eval()
    produced_mask(reference, plan)
    x = paddle.uniform([2, 3, 128, 128], min=-1, max=1)
    with paddle.no_grad():
        got, want = pruned(x), reference(x)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.shape[1] == OUT_CHANNELS
        scale = max(1.0, float(np.abs(w.numpy()).max()))
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-4, atol=1e-4 * scale)
    assert [layer.weight.shape[0] for layer in net.yolo_output] == [OUT_CHANNELS] * 3
    params = dict(net.named_parameters())
    assert params["yolo_block.0.tip.0.weight"].shape[0] < 256
    assert params["backbone.features.13.1.0.weight"].shape[0] < 256
    # the record replays on a fresh network to the same shapes and the same outputs
    replayed = apply_records(copy.deepcopy(pristine), SHAPE, plan.records)
    replayed.set_state_dict(pruned.state_dict())
    replayed.eval()
    with paddle.no_grad():
        for a, b in zip(replayed(x), got):
            np.testing.assert_array_equal(a.numpy(), b.numpy())


# -- export ---------------------------------------------------------------------------------------
DYNAMIC = [InputSpec([None, 3, None, None], "float32", "image"), InputSpec([None, 2], "int32", "im_size")]
FIXED = [InputSpec([1, 3, 128, 128], "float32", "image"), InputSpec([1, 2], "int32", "im_size")]


@pytest.fixture(scope="module")
def exportable(trained):
    """YOLOv3Inference of the trained net and of a pruned copy (uniform 0.4), in eval mode."""
    layers = {}
    base = copy.deepcopy(trained["net"])
    # 30 steps from the 1 % objectness prior leave the scores close together; spread the output
    # biases so that many boxes pass the 0.01 floor with clearly different scores (no ties)
    rng = np.random.default_rng(1)   # a seed whose scores are > 1e-6 apart
    for conv in base.yolo_output:
        conv.bias.set_value(conv.bias.numpy() + rng.normal(3, 2, conv.bias.shape).astype("float32"))
    for name in ("original", "pruned"):
        net = copy.deepcopy(base)
        if name == "pruned":
            pruner = L1NormFilterPruner(net, SHAPE)
            pruner.prune_vars({g.root: 0.4 for g in pruner.prunable_groups()})
            assert net.yolo_block[0].tip[0].weight.shape[0] < 256
        net.eval()
        layers[name] = YOLOv3Inference(net, net.anchors, net.anchor_masks, NUM_CLASSES)
        layers[name].eval()
    return layers


def _save(layer, path, spec):
    paddle.jit.save(layer, path, input_spec=spec)
    return path + ".json", path + ".pdiparams"


def _dygraph(layer, feeds):
    with paddle.no_grad():
        bbox, num = layer(paddle.to_tensor(feeds["image"]), paddle.to_tensor(feeds["im_size"]))
    bbox, num = bbox.numpy(), num.numpy()
    assert bbox.shape[0] > 10
    for rows in np.split(bbox, np.cumsum(num)[:-1]):
        assert np.abs(np.diff(rows[:, 1])).min() > 1e-6          # scores are not tied
    return bbox, num


def _paddle_inference(model_file, params_file, feeds):
    from paddle import inference
    from paddleprune.deploy.runners import ONEDNN_DELETED_PASSES

    config = inference.Config(model_file, params_file)
    config.disable_gpu()
    config.set_cpu_math_library_num_threads(2)
    config.enable_mkldnn()
    for name in ONEDNN_DELETED_PASSES:
        config.delete_pass(name)
    config.disable_glog_info()
    predictor = inference.create_predictor(config)
    assert predictor.get_input_names() == ["image", "im_size"]
    for name, value in feeds.items():
        handle = predictor.get_input_handle(name)
        handle.reshape(list(value.shape))
        handle.copy_from_cpu(value)
    predictor.run()
    return [predictor.get_output_handle(n).copy_to_cpu() for n in predictor.get_output_names()]


def _onnx_session(model_file, params_file):
    ort = pytest.importorskip("onnxruntime")
    from paddleprune.deploy.export import convert_to_onnx_bytes

    session = ort.InferenceSession(convert_to_onnx_bytes(model_file, params_file),
                                   providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image", "im_size"]
    return session


def _same_boxes(got, want, what):
    """Same rows in the same order: equal class and count per image, score within 1e-5,
    corners within 0.005 px (measured: 7e-7 and 3.4e-4 px)."""
    (bbox, num), (ref_bbox, ref_num) = got, want
    assert np.asarray(num).astype(int).tolist() == np.asarray(ref_num).astype(int).tolist(), what
    assert bbox.shape == ref_bbox.shape, what
    np.testing.assert_array_equal(bbox[:, 0], ref_bbox[:, 0], err_msg=what)
    np.testing.assert_allclose(bbox[:, 1], ref_bbox[:, 1], atol=1e-5, rtol=0, err_msg=what)
    np.testing.assert_allclose(bbox[:, 2:], ref_bbox[:, 2:], atol=5e-3, rtol=0, err_msg=what)
    print(what, "max |score diff|", np.abs(bbox[:, 1] - ref_bbox[:, 1]).max(),
          "max |corner diff|", np.abs(bbox[:, 2:] - ref_bbox[:, 2:]).max())


@pytest.mark.parametrize("which", ["original", "pruned"])
def test_paddle_inference_onednn_matches_dygraph(exportable, trained, which, tmp_path):
    """Dynamic batch and size: one export, two input sizes, batch 2."""
    layer = exportable[which]
    files = _save(layer, str(tmp_path / "model"), DYNAMIC)
    image = trained["batch"][0].numpy()
    for feeds in ({"image": image, "im_size": np.array([[128, 128], [300, 200]], "int32")},
                  {"image": np.ascontiguousarray(image[:, :, :96, :]),
                   "im_size": np.array([[96, 128], [480, 640]], "int32")}):
        _same_boxes(_paddle_inference(*files, feeds), _dygraph(layer, feeds), f"{which} paddle inference + oneDNN")


@pytest.mark.parametrize("which", ["original", "pruned"])
def test_onnxruntime_matches_dygraph_at_a_fixed_size_and_batch_1(exportable, trained, which, tmp_path):
    """paddle2onnx 2.1.0 converts multiclass_nms3 for batch 1 and a static number of candidate
    boxes only (see the next test), so this export fixes the input to 1 x 3 x 128 x 128."""
    layer = exportable[which]
    session = _onnx_session(*_save(layer, str(tmp_path / "model"), FIXED))
    image = trained["batch"][0].numpy()
    for i, size in enumerate(([128, 128], [300, 200])):
        feeds = {"image": image[i:i + 1], "im_size": np.array([size], "int32")}
        _same_boxes(session.run(None, feeds), _dygraph(layer, feeds), f"{which} onnxruntime")


@pytest.mark.xfail(strict=True, reason=(
    "paddle2onnx 2.1.0 multiclass_nms3 mapper gathers the score of (class, box) at "
    "class * M + box with M = the *static* candidate count, which is -1 for a dynamic input "
    "size: every row of a class > 0 gets a wrong score/box; batch > 1 fails in a Concat"))
def test_onnxruntime_with_a_dynamic_input_size(exportable, trained, tmp_path):
    layer = exportable["original"]
    session = _onnx_session(*_save(layer, str(tmp_path / "model"), DYNAMIC))
    feeds = {"image": trained["batch"][0].numpy()[:1], "im_size": np.array([[128, 128]], "int32")}
    _same_boxes(session.run(None, feeds), _dygraph(layer, feeds), "onnxruntime, dynamic size")

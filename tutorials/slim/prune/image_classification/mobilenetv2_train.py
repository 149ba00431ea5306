# Step 1 of PaddleX 1.x's classification pruning tutorial: train MobileNetV2 normally.
# As PaddleX wrote it; only the import lines differ, and the data set is the embedded one (offline).
import os
os.environ['CUDA_VISIBLE_DEVICES'] = '0'

from paddleprune.cls import transforms
import paddleprune as pdx

# PaddleX downloads vegetables_cls here; offline, the same folder name points at the embedded demo set
if not os.path.exists('vegetables_cls'):
    os.symlink(pdx.datasets.demo.classification(), 'vegetables_cls')

train_transforms = transforms.Compose([
    transforms.RandomCrop(crop_size=224), transforms.RandomHorizontalFlip(),
    transforms.Normalize()
])
eval_transforms = transforms.Compose([
    transforms.ResizeByShort(short_size=256),
    transforms.CenterCrop(crop_size=224), transforms.Normalize()
])

train_dataset = pdx.datasets.ImageNet(
    data_dir='vegetables_cls',
    file_list='vegetables_cls/train_list.txt',
    label_list='vegetables_cls/labels.txt',
    transforms=train_transforms,
    shuffle=True)
eval_dataset = pdx.datasets.ImageNet(
    data_dir='vegetables_cls',
    file_list='vegetables_cls/val_list.txt',
    label_list='vegetables_cls/labels.txt',
    transforms=eval_transforms)

model = pdx.cls.MobileNetV2(num_classes=len(train_dataset.labels))

model.train(
    num_epochs=10,
    train_dataset=train_dataset,
    train_batch_size=32,
    eval_dataset=eval_dataset,
    lr_decay_epochs=[4, 6, 8],
    learning_rate=0.025,
    save_dir='output/mobilenetv2',
    use_vdl=True)

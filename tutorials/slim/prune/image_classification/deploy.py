# After step 3: load the pruned model, evaluate it, classify one image and export it for Paddle Inference.
import paddleprune as pdx

model = pdx.load_model('output/mobilenetv2_prune/best_model')

eval_dataset = pdx.datasets.ImageNet(
    data_dir='vegetables_cls',
    file_list='vegetables_cls/val_list.txt',
    label_list='vegetables_cls/labels.txt',
    transforms=model.eval_transforms)
print('eval metrics:', model.evaluate(eval_dataset, batch_size=16))

with open('vegetables_cls/val_list.txt') as f:
    image = 'vegetables_cls/' + f.readline().split()[0]
print('predict', image, model.predict(image, topk=3))

model.export_inference_model('output/mobilenetv2_prune/inference_model')

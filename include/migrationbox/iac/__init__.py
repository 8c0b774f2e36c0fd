"""Infrastructure as code: a wave's target design (``design``) and its Terraform (``render``).

Templates live in ``terraform_templates/<cloud>/`` at the project root.
"""

from setuptools import find_packages, setup

setup(
    name="nnunetv2_unetrpp",
    version="0.1.0",
    description="UNETR++ (Shaker et al., IEEE TMI 2024) as nnU-Net v2 trainers, with a fair comparison against stock nnU-Net",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["nnunetv2_unetrpp", "nnunetv2_unetrpp.*"]),
    # the nnUNet_extTrainer shim is a plain folder (no __init__.py): nnU-Net imports it by path
    package_data={"nnunetv2_unetrpp": ["nnunet_ext/*.py"]},
    # Ranges are the ones the test-suite runs against: nnU-Net changed its trainer API in 2.3 and 2.7.
    install_requires=[
        "torch>=2.4,<2.15",
        "nnunetv2>=2.7.0,<2.9",
        "dynamic-network-architectures>=0.4.1,<0.5",
        "monai>=1.4,<1.7",
        "numpy>=1.24,<3",
        "scipy>=1.10,<2",
        "matplotlib>=3.7,<4",
        "SimpleITK>=2.2,<3",
        "tqdm>=4.60",
    ],
    extras_require={"test": ["pytest>=7,<10"]},
    entry_points={
        "console_scripts": [
            "nnUNetv2_unetrpp_convert_official=nnunetv2_unetrpp.network_architecture.official:convert_official_cli",
            "nnUNetv2_unetrpp_env=nnunetv2_unetrpp.env:main",
            "nnUNetv2_unetrpp_compare=nnunetv2_unetrpp.compare.cli:main",
            "nnUNetv2_unetrpp_demo=nnunetv2_unetrpp.demo.cli:main",
            "nnUNetv2_unetrpp_benchmark=nnunetv2_unetrpp.benchmarking.cli:main",
        ],
    },
)

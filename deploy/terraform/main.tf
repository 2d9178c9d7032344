# The paper's AWS worker: Ubuntu 22.04, one security group, an IAM role that may read the
# swarm's join data from SSM, and user data that installs Docker and joins the swarm.
# Fixed from the original: the SSM names are defined once (locals) and used by both the IAM
# policy and the user data (the original read `manager-ip` but documented `master_ip`), and
# every port is open only to var.allowed_cidr instead of 0.0.0.0/0.

terraform {
  required_version = ">= 1.3"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
  }
}

provider "aws" {
  region = var.region
}

locals {
  ssm_manager_ip  = "${var.ssm_prefix}/manager-ip"
  ssm_join_token  = "${var.ssm_prefix}/worker-join-token"
  ssm_param_arn   = "arn:aws:ssm:${var.region}:${data.aws_caller_identity.current.account_id}:parameter"
}

data "aws_caller_identity" "current" {}

data "aws_ami" "ubuntu_2204" {
  most_recent = true
  owners      = ["099720109477"] # Canonical

  filter {
    name   = "name"
    values = ["ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*"]
  }
}

resource "aws_security_group" "worker" {
  name_prefix = "starvation-worker-"
  description = "Swarm worker for the starvation experiment"

  ingress {
    description = "Swarm node communication (TCP)"
    from_port   = 7946
    to_port     = 7946
    protocol    = "tcp"
    cidr_blocks = [var.allowed_cidr]
  }

  ingress {
    description = "Swarm node communication (UDP)"
    from_port   = 7946
    to_port     = 7946
    protocol    = "udp"
    cidr_blocks = [var.allowed_cidr]
  }

  ingress {
    description = "Overlay network (VXLAN)"
    from_port   = 4789
    to_port     = 4789
    protocol    = "udp"
    cidr_blocks = [var.allowed_cidr]
  }

  # The stack's overlay is encrypted (IPsec ESP, IP protocol 50): without this rule its VXLAN
  # packets between nodes are dropped and tasks on different nodes cannot reach each other.
  ingress {
    description = "Encrypted overlay (IPsec ESP)"
    from_port   = 0
    to_port     = 0
    protocol    = "50"
    cidr_blocks = [var.allowed_cidr]
  }

  ingress {
    description = "The workload service (routing mesh)"
    from_port   = 5000
    to_port     = 5000
    protocol    = "tcp"
    cidr_blocks = [var.allowed_cidr]
  }

  ingress {
    description = "SSH"
    from_port   = 22
    to_port     = 22
    protocol    = "tcp"
    cidr_blocks = [var.allowed_cidr]
  }

  egress {
    description = "Package downloads, SSM, the manager"
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_iam_role" "worker" {
  name_prefix = "starvation-worker-"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ec2.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
}

resource "aws_iam_role_policy" "read_join_data" {
  name = "read-swarm-join-data"
  role = aws_iam_role.worker.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect = "Allow"
      Action = ["ssm:GetParameter"]
      Resource = [
        "${local.ssm_param_arn}${local.ssm_manager_ip}",
        "${local.ssm_param_arn}${local.ssm_join_token}",
      ]
    }]
  })
}

resource "aws_iam_instance_profile" "worker" {
  name_prefix = "starvation-worker-"
  role        = aws_iam_role.worker.name
}

resource "aws_instance" "worker" {
  ami                    = data.aws_ami.ubuntu_2204.id
  instance_type          = var.instance_type
  key_name               = var.key_name
  iam_instance_profile   = aws_iam_instance_profile.worker.name
  vpc_security_group_ids = [aws_security_group.worker.id]

  user_data = templatefile("${path.module}/user_data.sh.tftpl", {
    region         = var.region
    ssm_manager_ip = local.ssm_manager_ip
    ssm_join_token = local.ssm_join_token
  })

  metadata_options {
    http_tokens = "required"
  }

  tags = {
    Name = "starvation-worker"
    role = "worker"
  }
}
